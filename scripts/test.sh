#!/usr/bin/env bash
# Everything CI checks, in order from cheapest to slowest.
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks

if [ -f package.json ]; then
    npx --no-install biome check js
    # the committed bundle must equal a fresh build of js/
    npm run --silent build
    if ! git diff --quiet -- src/lmscope/static; then
        echo "src/lmscope/static is stale: run 'npm run build' and commit the bundle" >&2
        git --no-pager diff --stat -- src/lmscope/static >&2
        exit 1
    fi
    npm test --silent
fi

mkdir -p test-output
.venv/bin/python -m pytest -q -ra "$@"
