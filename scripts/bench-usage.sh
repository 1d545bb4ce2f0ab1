#!/usr/bin/env bash
# Generates a year of a 50-person team's usage (USAGE_BENCH_ROWS task_usage
# rows, default 1,000,000) and times the usage routes over HTTP (see
# benches/usage.rs). On PostgreSQL (a throwaway cluster from
# scripts/postgres.sh, a fresh database in it):
#   USAGE_ENGINE=postgres scripts/bench-usage.sh
# and, to time the routes again on the data of the last run (generating it
# takes minutes; SQLite keeps its file in target/bench-usage/):
#   USAGE_REUSE=1 scripts/bench-usage.sh
#   USAGE_ENGINE=postgres USAGE_REUSE=1 scripts/bench-usage.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${USAGE_ENGINE:-sqlite}" = "postgres" ]; then
  if ! scripts/postgres.sh status; then
    trap 'scripts/postgres.sh stop' EXIT
  fi
  admin=$(scripts/postgres.sh start)
  if [ "${USAGE_REUSE:-0}" != "1" ]; then
    psql -q "$admin" -c "DROP DATABASE IF EXISTS agenthub_usage" -c "CREATE DATABASE agenthub_usage"
  fi
  export USAGE_DATABASE_URL="${admin%/postgres}/agenthub_usage"
else
  # the SQLite file is kept for USAGE_REUSE=1 (generating it takes minutes)
  mkdir -p target/bench-usage
  if [ "${USAGE_REUSE:-0}" != "1" ]; then
    rm -f target/bench-usage/usage.db target/bench-usage/usage.db-wal target/bench-usage/usage.db-shm
  fi
  export USAGE_SQLITE_FILE="$PWD/target/bench-usage/usage.db"
fi
exec cargo bench --bench usage
