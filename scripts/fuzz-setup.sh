#!/usr/bin/env bash
# Installs what `cargo fuzz` (libFuzzer) needs, when the machine has a nightly toolchain:
# cargo-fuzz from crates.io (pinned minor version), plus what `make setup` installs (cmake for
# Pingora's zlib-ng). Prints the reason and exits 1 when no nightly toolchain exists; then
# `make fuzz` runs the proptest campaign instead (scripts/fuzz.sh). Not used by `make test`.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz-setup: no nightly toolchain (rustup toolchain list); cargo fuzz needs one" >&2
    exit 1
fi
./scripts/setup.sh
if ! cargo fuzz --version 2>/dev/null | grep -q "^cargo-fuzz $CARGO_FUZZ_VERSION\."; then
    echo "fuzz-setup: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
    cargo install --locked cargo-fuzz --version "~$CARGO_FUZZ_VERSION"
fi
cargo fuzz --version
