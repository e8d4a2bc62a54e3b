#!/usr/bin/env bash
# Install (if missing) and start a throwaway PostgreSQL on 127.0.0.1:$PGPORT for the tests.
# Prints the SQLAlchemy URL on its last line.
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGDATA="${PGDATA_DIR:-/tmp/deploy-modes-pg}"
bin_dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin_dir" ] || [ ! -x "$bin_dir/postgres" ]; then
  echo "installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bin_dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! as_pg "$bin_dir/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  rm -rf "$PGDATA"
  mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
  as_pg "$bin_dir/initdb" -D "$PGDATA" -U postgres -A trust >/dev/null
  as_pg "$bin_dir/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
    -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1" start >&2
fi
as_pg "$bin_dir/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
  "select 1 from pg_database where datname='deploy_test'" | grep -q 1 ||
  as_pg "$bin_dir/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres deploy_test
echo "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/deploy_test"
