"""Settings come from the environment; a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from studio.env import Env, database_from_url, read_env_file
from tests.support.processes import ROOT


def start_django(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.STUDIO_MODE, settings.STUDIO_PORT, settings.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "studio.settings", "STUDIO_ENV_FILE": "",
             "STUDIO_DATA_DIR": str(tmp_path), **env},
    )


@pytest.mark.parametrize(("variable", "value"), [
    ("STUDIO_PORT", "eighty"),
    ("STUDIO_PORT", "70000"),
    ("REDIS_URL", "localhost:6379"),
    ("DATABASE_URL", "mysql://db/studio"),
    ("DATABASE_URL", "postgres://user@db:notaport/studio"),
    ("FAL_QUEUE_URL", "queue.fal.run"),
    ("DJANGO_DEBUG", "maybe"),
    ("VIDEO_GENERATION_TIMEOUT", "three minutes"),
    ("STUDIO_THROTTLE_GENERATION", "lots"),
    ("STUDIO_THROTTLE_FAL_TOKEN", "0/hour"),
    ("STUDIO_PUBLIC_URL", "studio.example.com"),
])
def test_it_refuses_to_start_with_a_bad_value_and_names_the_variable(tmp_path, variable, value):
    result = start_django({variable: value}, tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_it_starts_in_the_embedded_mode_by_default(tmp_path):
    result = start_django({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["embedded", "8000", "django.db.backends.sqlite3"]
    assert (tmp_path / "secret_key").exists()


def test_it_switches_to_services_with_redis_and_postgres(tmp_path):
    result = start_django({"REDIS_URL": "redis://127.0.0.1:6379/3", "STUDIO_PORT": "9001",
                           "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/studio"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["services", "9001", "django.db.backends.postgresql"]


def test_it_reads_an_env_file_and_the_process_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport STUDIO_PORT=9100\nFAL_KEY='from-file'\nLOG_LEVEL=debug\n")
    env = Env({"LOG_LEVEL": "warning"}, read_env_file(env_file))
    assert env.int("STUDIO_PORT", 8000) == 9100
    assert env.str("FAL_KEY") == "from-file"
    assert env.str("LOG_LEVEL") == "warning"


def test_it_rejects_a_malformed_env_file_line(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("THIS IS NOT AN ASSIGNMENT\n")
    with pytest.raises(ImproperlyConfigured, match=r"\.env:1"):
        read_env_file(env_file)


def test_it_accepts_fal_api_key_as_the_seeds_name_for_fal_key():
    assert Env({"FAL_API_KEY": "k1"}).optional_str("FAL_KEY", "FAL_API_KEY") == "k1"
    assert Env({"FAL_API_KEY": "k1", "FAL_KEY": "k2"}).optional_str("FAL_KEY", "FAL_API_KEY") == "k2"


def test_it_parses_database_urls():
    db = database_from_url("DATABASE_URL", "postgres://u%40x:p%2Fw@db.local:6543/studio")
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == ("u@x", "p/w", "db.local", "6543", "studio")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url("DATABASE_URL", "postgres://db.local")


def test_prepared_statements_are_a_setting_beside_the_pool():
    url = "postgres://db.local/studio"
    prepared = database_from_url("DATABASE_URL", url, pool_size=4, prepared=True)["OPTIONS"]
    assert prepared == {"pool": {"min_size": 1, "max_size": 4, "timeout": 30.0},
                        "server_side_binding": True, "prepare_threshold": 2}
    assert "OPTIONS" not in database_from_url("DATABASE_URL", url)  # behind PgBouncer: plain


def test_env_default_lists_every_variable_the_settings_read():
    import re

    settings_source = (ROOT / "studio" / "settings.py").read_text()
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', settings_source))
    read |= set(re.findall(r'optional_str\("[A-Z_]+", "([A-Z_]+)"\)', settings_source))
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.default").read_text(), re.M))
    assert read - listed == set()


def test_a_unix_socket_redis_url_is_accepted():
    assert Env({"REDIS_URL": "unix:///run/redis/redis.sock"}).url(
        "REDIS_URL", None, schemes=("redis", "rediss", "unix")) == "unix:///run/redis/redis.sock"
