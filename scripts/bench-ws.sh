#!/usr/bin/env bash
# Wake-up latency of the daemon socket against the real binary: a simulated
# daemon on GET /api/daemon/ws claims each task queued over HTTP (see
# benches/ws.rs).  WS_TASKS=200 scripts/bench-ws.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench ws
