#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine that has only the Rust
# toolchain: cmake (Pingora's zlib-ng build), curl (the demo's walkthrough) and redis-server
# (the shared session store's tests, which start their own on a loopback port). Idempotent.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}"
  }
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest missing; tests will run with cargo test"
fi
