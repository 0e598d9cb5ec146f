#!/usr/bin/env bash
# What `bash scripts/test` needs on this machine, made so (idempotent; silent when all is there):
#   - Debian's postgresql and redis-server (the services pass), chromium (the page tests) and
#     docker-compose (the compose file's check), installed with apt when missing: as root, or
#     through passwordless sudo; otherwise it says what to install and stops;
#   - PostgreSQL and Redis on 127.0.0.1 started (scripts/services.sh);
#   - a PostgreSQL installed here and now lets the user postgres in over loopback without a
#     password, as the tests connect (postgres://postgres@127.0.0.1:5432); a PostgreSQL that
#     was already here keeps its own settings.
# With TEST_DATABASE_URL or TEST_REDIS_URL set, the services are yours: that one is not installed
# and neither is started here. STUDIO_TEST_SETUP=0 skips all of this.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${STUDIO_TEST_SETUP:-1}" = 0 ] && exit 0

local_postgres=$([ -z "${TEST_DATABASE_URL:-}" ] && echo 1 || true)
local_redis=$([ -z "${TEST_REDIS_URL:-}" ] && echo 1 || true)

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ -n "$local_redis" ] && ! command -v redis-server >/dev/null 2>&1; then missing+=(redis-server); fi
new_postgres=""
if [ -n "$local_postgres" ] && ! command -v pg_ctlcluster >/dev/null 2>&1; then
    missing+=(postgresql)
    new_postgres=1
fi

as_root=()  # a command as root: this shell itself, or passwordless sudo
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root=(sudo -n); fi

if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" != 0 ] && [ ${#as_root[@]} -eq 0 ]; }; then
        echo "The tests need ${missing[*]}: install them (Debian: apt-get install ${missing[*]})," \
             "or run this as root." >&2
        exit 1
    fi
    echo "== installing ${missing[*]} (apt)"
    # apt's own chatter only when it fails.
    if ! out=$("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive sh -c \
            'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"' apt "${missing[@]}" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "apt-get could not install ${missing[*]}" >&2
        exit 1
    fi
fi

if [ -n "$new_postgres" ]; then
    # Debian's new cluster asks for a password over TCP; the tests' user has none.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
        "${as_root[@]}" sed -i -e '1i host all postgres ::1/128 trust' -e '1i host all postgres 127.0.0.1/32 trust' "$hba"
        version=$(basename "$(dirname "$(dirname "$hba")")")
        "${as_root[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1 || true
    done
fi

# PostgreSQL and Redis on 127.0.0.1, started when they do not answer (quiet when they do).
if [ -n "$local_postgres" ] && [ -n "$local_redis" ]; then
    "${as_root[@]}" bash scripts/services.sh
fi
