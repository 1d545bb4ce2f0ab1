#!/usr/bin/env bash
# Load benchmark against the real binary on 127.0.0.1 (see benches/load.rs).
#   LOAD_DAEMONS=1000 LOAD_SECS=10 LOAD_CLIENTS=32 scripts/load.sh
# With a workspace budget that every usage report charges: LOAD_BUDGET=1.
# On PostgreSQL (a throwaway cluster from scripts/postgres.sh, a fresh
# database in it), with one node or several behind a round-robin client:
#   LOAD_ENGINE=postgres LOAD_NODES=3 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${LOAD_ENGINE:-sqlite}" = "postgres" ]; then
  if ! scripts/postgres.sh status; then
    trap 'scripts/postgres.sh stop' EXIT
  fi
  admin=$(scripts/postgres.sh start)
  psql -q "$admin" -c "DROP DATABASE IF EXISTS agenthub_load" -c "CREATE DATABASE agenthub_load"
  export LOAD_DATABASE_URL="${admin%/postgres}/agenthub_load"
fi
cargo bench --bench load
