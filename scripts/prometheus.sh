#!/usr/bin/env bash
# Debian's Prometheus server and promtool, for the deploy tests (alert rules, the
# end-to-end scrape of a real worker). The tests start their own server on a free
# loopback port; this script only installs the binaries.
#
#   scripts/prometheus.sh install   apt-get install prometheus if promtool or the server is missing
#   scripts/prometheus.sh check     print the versions, fail if either binary is missing
set -euo pipefail

install() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then return 0; fi
  echo "prometheus.sh: installing Debian's prometheus (server + promtool)" >&2
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
  # Debian may start a system instance on :9090; the tests run their own.
  $sudo service prometheus stop >/dev/null 2>&1 || true
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
}

check() {
  command -v promtool >/dev/null && command -v prometheus >/dev/null || {
    echo "prometheus.sh: promtool/prometheus not on PATH; run scripts/prometheus.sh install" >&2
    exit 1
  }
  prometheus --version 2>&1 | head -1
  promtool --version 2>&1 | head -1
}

case "${1:-}" in
  install) install ;;
  check) check ;;
  *) echo "usage: $0 install|check" >&2; exit 2 ;;
esac
