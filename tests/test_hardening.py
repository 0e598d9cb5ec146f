"""What an operator gets without asking: private files, Secure cookies and HSTS behind https."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tests.support.processes import ROOT


def run_django(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-c", "import os; os.umask(0o022); import django; django.setup()\n" + code],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_ENV_FILE": "",
             "STUDIO_DATA_DIR": str(tmp_path / "data"), **env},
    )


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_database_and_the_secret_key_are_readable_by_the_studio_only(tmp_path):
    result = run_django("from django.core.management import call_command\n"
                        "call_command('migrate', verbosity=0)\n"
                        "from rest_framework.authtoken.models import Token\n"
                        "from django.contrib.auth.models import User\n"
                        "Token.objects.create(user=User.objects.create_user('u'))", tmp_path)
    assert result.returncode == 0, result.stderr
    data = tmp_path / "data"
    files = [data / "secret_key", data / "studio.sqlite3"]
    files += [p for p in (data / "studio.sqlite3-wal", data / "studio.sqlite3-shm") if p.exists()]
    assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o600) for p in files}
    assert mode(data) == 0o700


def test_files_left_readable_by_an_older_version_are_made_private(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret_key").write_text("an-old-secret-key-" * 3)
    (data / "studio.sqlite3").touch()
    for path in data.iterdir():
        path.chmod(0o644)
    assert run_django("", tmp_path).returncode == 0
    assert mode(data / "secret_key") == 0o600 and mode(data / "studio.sqlite3") == 0o600


CHECK_TLS = """
from django.test import Client
from django.contrib.auth.models import User
from django.core.management import call_command
call_command('migrate', verbosity=0)
User.objects.create_user('alice', password='wonderland-42')
client = Client(HTTP_X_FORWARDED_PROTO='https', SERVER_NAME='studio.example.com')
page = client.get('/accounts/login/')
login = client.post('/accounts/login/', {'username': 'alice', 'password': 'wonderland-42',
                    'csrfmiddlewaretoken': client.cookies['csrftoken'].value},
                    HTTP_REFERER='https://studio.example.com/accounts/login/')
print('hsts', page.get('Strict-Transport-Security'))
print('session-secure', login.cookies['sessionid']['secure'])
print('csrf-secure', page.cookies['csrftoken']['secure'])
print('status', login.status_code)
"""


@pytest.mark.parametrize(("public_url", "secure"), [("https://studio.example.com", True),
                                                    ("http://studio.example.com", False)])
def test_an_https_public_url_makes_cookies_secure_and_turns_hsts_on(tmp_path, public_url, secure):
    result = run_django(CHECK_TLS, tmp_path, STUDIO_PUBLIC_URL=public_url)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["status"] == "302"  # the public host is allowed, its origin trusted for CSRF
    if secure:
        assert lines["hsts"].startswith("max-age=31536000")
        assert lines["session-secure"] == "True" and lines["csrf-secure"] == "True"
    else:
        assert lines["hsts"] == "None"
        assert lines["session-secure"] == "" and lines["csrf-secure"] == ""
