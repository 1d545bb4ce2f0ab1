#!/usr/bin/env bash
# Copies the pinned Chart.js (package.json / package-lock.json) from the npm
# registry into static/vendor/, with its license. The copy is committed, so
# building agenthub needs no npm step; rerun this after changing the pin.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --no-audit --no-fund --loglevel=error
mkdir -p static/vendor/chart.js
cp node_modules/chart.js/dist/chart.umd.min.js static/vendor/chart.js/chart.umd.min.js
cp node_modules/chart.js/LICENSE.md static/vendor/chart.js/LICENSE.md
node -e 'console.log("vendored chart.js " + require("./node_modules/chart.js/package.json").version)'
