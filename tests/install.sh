#!/bin/sh
# Everything the tests need: the pinned Python packages, Debian's chromium for the browser test, and Debian's
# Orthanc with its DICOMweb plugin for the PACS tests (each installed only where it is missing and apt can install
# it; elsewhere those tests are skipped with the reason).
set -e
cd "$(dirname "$0")/.."
pip install -q -r requirements-test.txt
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
APT_UPDATED=""
apt_install() {  # apt_install PACKAGE...: quietly, without recommends, after one apt-get update; fails where apt can't
  command -v apt-get >/dev/null 2>&1 || return 1
  { [ -n "$APT_UPDATED" ] || $SUDO apt-get update -qq; } && APT_UPDATED=1 &&
    $SUDO apt-get install -y -qq --no-install-recommends "$@"
}
if ! command -v chromium >/dev/null 2>&1; then
  if ! apt_install chromium >/dev/null 2>&1; then
    echo "tests/install.sh: chromium could not be installed; the browser test will be skipped" >&2
  fi
fi
# Debian puts Orthanc in /usr/sbin, outside an ordinary user's PATH
if ! { command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null 2>&1 \
   || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  if ! apt_install orthanc orthanc-dicomweb >/dev/null 2>&1; then
    echo "tests/install.sh: orthanc and orthanc-dicomweb could not be installed; the PACS tests will be skipped" >&2
  fi
fi
