#!/usr/bin/env bash
# Generates a year of a 50-person team's usage (USAGE_BENCH_ROWS task_usage
# rows, default 1,000,000) and times the usage routes over HTTP (see
# benches/usage.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench usage
