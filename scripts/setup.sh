#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine that has only the Rust
# toolchain: cmake (Pingora's zlib-ng build), curl (the demo's walkthrough), redis-server
# and redis-tools (the shared session store's tests start their own servers, sentinels and
# clusters on loopback ports; `redis-cli --cluster create` forms a cluster) and chromium
# (the dashboard's tests drive it headless; without its recommends: no GPU, desktop or extra
# fonts needed). Idempotent.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || [ -x /usr/bin/redis-cli ] || missing+=(redis-tools)
lean=()
command -v chromium >/dev/null 2>&1 || lean+=(chromium)
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# apt-get install "$@", updating the package lists first if that fails.
install() {
  $SUDO apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "$@"
  }
}
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  install "${missing[@]}"
fi
if [ ${#lean[@]} -gt 0 ]; then
  echo "setup: installing ${lean[*]} (without recommends)"
  install --no-install-recommends "${lean[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest missing; tests will run with cargo test"
fi
