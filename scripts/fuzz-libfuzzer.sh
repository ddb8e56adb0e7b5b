#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and header logic with cargo fuzz (libFuzzer, AddressSanitizer,
# debug assertions), one target after another (the machine has 2 cores shared with others), each for
# FUZZ_SECONDS (default 600). Targets (fuzz/fuzz_targets/, see docs/testing.md (Fuzzing)):
# cookie_codec, key_extraction, config_loader, header_stripping; FUZZ_TARGETS picks some.
#
# Each target grows its corpus in fuzz/corpus/<target> (git-ignored), starts from the committed
# seeds in fuzz/seeds/<target> (config_loader also from conf/ and tests/invalid_configs/), uses
# fuzz/dicts/<dict>, and saves a crashing input in fuzz/artifacts/<target>/ (git-ignored).
# Prints, per target: seconds, executions, coverage (cov: edges, ft: features), corpus size,
# crashes. Logs: $FUZZ_LOG_DIR/<target>.log. FUZZ_ARGS adds libFuzzer flags (e.g. -jobs=2).
#
#   make fuzz                                      # every target, 10 minutes each
#   FUZZ_TARGETS=config_loader FUZZ_SECONDS=60 make fuzz
#   cargo +nightly fuzz run cookie_codec fuzz/artifacts/cookie_codec/crash-…   # replay a crash
set -u
cd "$(dirname "$0")/.."
./scripts/fuzz-setup.sh >/dev/null || exit 1
seconds=${FUZZ_SECONDS:-600}
targets=${FUZZ_TARGETS:-cookie_codec key_extraction config_loader header_stripping}
log_dir=${FUZZ_LOG_DIR:-fuzz/logs}
mkdir -p "$log_dir"

dict_of() {
    case "$1" in
        cookie_codec | key_extraction) echo fuzz/dicts/cookie.dict ;;
        *) echo "fuzz/dicts/$1.dict" ;;
    esac
}

# Build every target first, so that the time limits are fuzzing time only.
if ! cargo +nightly fuzz build >"$log_dir/build.log" 2>&1; then
    tail -n 30 "$log_dir/build.log" >&2
    echo "fuzz: cargo fuzz build failed (log: $log_dir/build.log)" >&2
    exit 1
fi

status=0
printf '%-17s %8s %12s %7s %8s %7s %8s\n' target seconds executions cov ft corpus crashes
for target in $targets; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    seeds=()
    [ -d "fuzz/seeds/$target" ] && seeds+=("fuzz/seeds/$target")
    [ "$target" = config_loader ] && seeds+=(conf tests/invalid_configs)
    log=$log_dir/$target.log
    start=$(date +%s)
    # -timeout: one input taking 10 s is a finding (a hang), not a slow machine.
    cargo +nightly fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -dict="$(dict_of "$target")" \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    units=$(find "$corpus" -type f | wc -l)
    crashes=0
    if [ $rc -ne 0 ]; then
        crashes=1
        status=1
    fi
    printf '%-17s %8d %12s %7s %8s %7s %8s\n' "$target" "$elapsed" "${execs:--}" "${cov:--}" \
        "${ft:--}" "$units" "$crashes"
    if [ $rc -ne 0 ]; then
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|artifact_prefix|Test unit written)' "$log" \
            | head -n 5 >&2
    fi
done
exit $status
