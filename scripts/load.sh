#!/usr/bin/env bash
# Load benchmark against the real binary on 127.0.0.1 (see benches/load.rs).
#   LOAD_DAEMONS=1000 LOAD_SECS=10 LOAD_CLIENTS=32 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load
