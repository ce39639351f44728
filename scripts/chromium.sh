#!/usr/bin/env bash
# Debian's chromium, headless, for the browser test of the HTML report (tests/unit/test_report_browser.py).
#
#   scripts/chromium.sh install   apt-get install chromium if it is missing
#   scripts/chromium.sh path      print the browser's path (exit 1 if it is not installed)
set -euo pipefail

find_browser() {
  local name
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null; then command -v "$name"; return 0; fi
  done
  return 1
}

install() {
  find_browser >/dev/null && return 0
  echo "chromium.sh: installing Debian's chromium" >&2
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >&2
}

case "${1:-}" in
  install) install ;;
  path) find_browser || { echo "chromium.sh: chromium is not installed (scripts/chromium.sh install)" >&2; exit 1; } ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
