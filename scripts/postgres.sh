#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with a role `picoclaw` (password
# `picoclaw`) owning a database `picoclaw_test`, as the PostgreSQL tests expect; installs Debian's
# postgresql package when the server is missing. The server runs as the `postgres` user and
# listens on loopback only. Prints the URL the tests use (PICOCLAW_TEST_POSTGRES_URL).
#
# Usage: bash scripts/postgres.sh            (root, or a user with sudo)
set -euo pipefail
URL="postgres://picoclaw:picoclaw@127.0.0.1:5432/picoclaw_test"
SUDO=""
AS_POSTGRES="runuser -u postgres --"
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
  AS_POSTGRES="sudo -u postgres"
fi
log() { printf '%s\n' "$*" >&2; }

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
works() { PGCONNECT_TIMEOUT=3 psql "$URL" -Atqc 'select 1' >/dev/null 2>&1; }

if command -v pg_isready >/dev/null 2>&1 && ready && works; then
  echo "$URL"
  exit 0
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL (Debian package postgresql)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
  log "creating the PostgreSQL $version cluster"
  $SUDO pg_createcluster "$version" main >&2
fi
cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
if ! ready; then
  log "starting PostgreSQL ($cluster) on 127.0.0.1:5432"
  # pg_ctlcluster runs the server as the cluster's owner (postgres), never as root.
  # shellcheck disable=SC2086
  $SUDO pg_ctlcluster $cluster start >&2
fi
for _ in $(seq 1 60); do
  ready && break
  sleep 0.5
done
if ! ready; then
  log "PostgreSQL did not start; see /var/log/postgresql/"
  exit 1
fi
if ! works; then
  $AS_POSTGRES psql -q -v ON_ERROR_STOP=1 -d postgres >&2 <<'SQL' || true
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'picoclaw') THEN
    CREATE ROLE picoclaw LOGIN CREATEDB PASSWORD 'picoclaw';
  ELSE
    ALTER ROLE picoclaw LOGIN CREATEDB PASSWORD 'picoclaw';
  END IF;
END $$;
SELECT 'CREATE DATABASE picoclaw_test OWNER picoclaw'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'picoclaw_test') \gexec
SQL
fi
if ! works; then
  log "PostgreSQL runs but $URL does not connect; check pg_hba.conf allows password logins on 127.0.0.1"
  exit 1
fi
echo "$URL"
