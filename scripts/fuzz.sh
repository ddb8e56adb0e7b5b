#!/usr/bin/env bash
# `make fuzz`: coverage-guided fuzzing with cargo fuzz (libFuzzer) when the machine has a nightly
# toolchain (scripts/fuzz-libfuzzer.sh, which installs cargo-fuzz through scripts/fuzz-setup.sh),
# else the proptest campaign (scripts/fuzz-proptest.sh). FUZZ_ENGINE=libfuzzer or proptest picks
# one; the other variables (FUZZ_SECONDS, FUZZ_TARGETS, ...) are read by the script chosen.
set -u
cd "$(dirname "$0")/.."
engine=${FUZZ_ENGINE:-auto}
if [ "$engine" = auto ]; then
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        engine=libfuzzer
    else
        echo "fuzz: no nightly toolchain: running the proptest campaign instead of cargo fuzz"
        engine=proptest
    fi
fi
case "$engine" in
    libfuzzer) exec ./scripts/fuzz-libfuzzer.sh ;;
    proptest) exec ./scripts/fuzz-proptest.sh ;;
    *) echo "fuzz: FUZZ_ENGINE must be auto, libfuzzer or proptest, not $engine" >&2; exit 2 ;;
esac
