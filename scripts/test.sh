#!/usr/bin/env bash
# The whole test suite on both engines: first on SQLite (a temporary file
# per test), then on a throwaway PostgreSQL cluster (a schema per test),
# started here and stopped when the run ends. Extra arguments go to both
# `cargo test` runs (e.g. `scripts/test.sh --test tasks`).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== test suite on SQLite"
cargo test --locked "$@"

echo "== test suite on PostgreSQL"
# a cluster that was already running (a developer's) is left running
if ! scripts/postgres.sh status; then
  trap 'scripts/postgres.sh stop' EXIT
fi
url=$(scripts/postgres.sh start)
AGENTHUB_TEST_POSTGRES="$url" cargo test --locked "$@"
