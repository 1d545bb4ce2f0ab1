#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite and the benchmarks, from
# Debian's postgresql package: its own data directory, a loopback port and
# a socket directory of its own, trust authentication for one role, never
# the system's cluster.
#
#   scripts/postgres.sh start   # prints the admin URL to export as
#                               # AGENTHUB_TEST_POSTGRES
#   scripts/postgres.sh stop    # stops it and deletes its data
#   scripts/postgres.sh status  # exit 0 while it runs
#
# AGENTHUB_PG_DIR (default /tmp/agenthub-pg) and AGENTHUB_PG_PORT (default
# 54329) choose where. As root, the server runs as the `postgres` user
# (PostgreSQL refuses to run as root).
set -euo pipefail

dir=${AGENTHUB_PG_DIR:-/tmp/agenthub-pg}
port=${AGENTHUB_PG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2
  exit 1
fi

as_owner() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

case "${1:-}" in
  status)
    running
    ;;
  start)
    if running; then
      echo "postgres://agenthub@127.0.0.1:$port/postgres"
      exit 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" = "0" ]; then chown postgres "$dir"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U agenthub --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    # fsync stays on: the suite's crash tests count on durable commits
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c shared_buffers=128MB" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://agenthub@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
