#!/usr/bin/env bash
# A long proptest campaign over tests/properties.rs: the fuzzing for machines without a nightly
# toolchain (where one exists, `make fuzz` runs cargo fuzz instead: scripts/fuzz-libfuzzer.sh).
# Each target (a module of tests/properties.rs: cookie_codec, key_extraction, config_loader) runs for FUZZ_SECONDS (default 600) in batches of FUZZ_BATCH
# cases per property (default 2000), each batch with a fresh random seed. Prints, per target:
# duration, properties, cases executed (completed batches only), failures. A failure stops its
# target: proptest shrinks it and saves it to tests/properties.proptest-regressions (replayed by
# every later run), and its output is kept in $FUZZ_LOG_DIR/<target>.failure.log.
#
#   make fuzz-proptest                       # every target, 10 minutes each
#   FUZZ_TARGETS=config_loader FUZZ_SECONDS=60 make fuzz-proptest
#   FUZZ_RELEASE=1 make fuzz-proptest        # release build: more cases per second
set -u
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
seconds=${FUZZ_SECONDS:-600}
batch=${FUZZ_BATCH:-2000}
targets=${FUZZ_TARGETS:-cookie_codec key_extraction config_loader}
log_dir=${FUZZ_LOG_DIR:-${CARGO_TARGET_DIR:-target}/fuzz-logs}
profile=()
[ -n "${FUZZ_RELEASE:-}" ] && profile=(--release)
mkdir -p "$log_dir"

binary=$($CARGO test "${profile[@]}" --test properties --no-run 2>&1 |
    sed -n 's/.*Executable tests\/properties.rs (\(.*\))/\1/p' | tail -n 1)
if [ -z "$binary" ] || [ ! -x "$binary" ]; then
    echo "fuzz: could not build tests/properties.rs" >&2
    exit 1
fi

status=0
printf '%-16s %9s %10s %12s %9s\n' target seconds properties cases failures
for target in $targets; do
    properties=$("$binary" --list 2>/dev/null | grep -c "^$target::.*: test$")
    if [ "$properties" -eq 0 ]; then
        echo "fuzz: no properties in target $target" >&2
        exit 1
    fi
    start=$(date +%s)
    batches=0
    failures=0
    while [ $(($(date +%s) - start)) -lt "$seconds" ]; do
        if PROPTEST_CASES=$batch "$binary" "$target::" --test-threads 1 \
            >"$log_dir/$target.last.log" 2>&1; then
            batches=$((batches + 1))
        else
            # Stop this target: the saved failure is replayed first by every later batch, so
            # going on would only find it again. Fix it, then run the target again.
            failures=$((failures + 1))
            cp "$log_dir/$target.last.log" "$log_dir/$target.failure.log"
            status=1
            break
        fi
    done
    elapsed=$(($(date +%s) - start))
    printf '%-16s %9d %10d %12d %9d\n' "$target" "$elapsed" "$properties" \
        $((batches * batch * properties)) "$failures"
done
exit $status
