#!/usr/bin/env bash
# Set up and run the test suite: a virtualenv with the test extras, Debian's Chromium for the
# browser test (installed when missing and possible), then pytest with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium and chromium-driver for the browser test…"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium/chromedriver missing: the browser test will be skipped (apt-get install chromium chromium-driver)."
  fi
fi
# axe-core (the accessibility checks of the browser test), from the npm registry into
# tests/.axe (not committed); without npm those checks are skipped.
if [ ! -f tests/.axe/node_modules/axe-core/axe.min.js ]; then
  if command -v npm >/dev/null; then
    echo "Installing axe-core from npm for the accessibility checks…"
    npm install --prefix tests/.axe --no-audit --no-fund --no-save --silent axe-core@4 >/dev/null 2>&1 \
      || echo "npm install axe-core failed: the accessibility checks will be skipped."
  else
    echo "npm missing: the accessibility checks will be skipped (apt-get install npm)."
  fi
fi
exec .venv/bin/pytest "$@"
