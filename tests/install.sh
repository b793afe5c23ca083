#!/bin/sh
# Everything the tests need: the pinned Python packages, and Debian's chromium for the browser test
# (installed only where it is missing and apt can install it; elsewhere that one test is skipped with the reason).
set -e
cd "$(dirname "$0")/.."
pip install -q -r requirements-test.txt
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1; then
    echo "tests/install.sh: chromium could not be installed; the browser test will be skipped" >&2
  fi
fi
