#!/usr/bin/env bash
# libFuzzer targets for the parsers Sluice owns (each built with swiftc -sanitize=fuzzer,address
# from its target file and the Sluice sources it exercises; no other dependency).
#   scripts/fuzz.sh list                  the targets
#   scripts/fuzz.sh run TARGET SECONDS    build and run one; non-zero on a crash, leak or timeout
#   scripts/fuzz.sh all SECONDS           each target for SECONDS (CI)
# Seeds are committed in scripts/fuzz/seeds/TARGET; the growing corpus and any crash file stay
# in .build-fuzz/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A SOURCES=(
    [json_scanner]="Sources/SluiceHTTP/JSONScanner.swift"
    [request_target]="Sources/SluiceHTTP/RequestTarget.swift Sources/SluiceHTTP/JSONScanner.swift"
    [path_template]="Sources/SluiceConfig/PathPattern.swift Sources/SluiceConfig/ConfigError.swift"
    [units]="Sources/SluiceConfig/Units.swift"
)
OUT=.build-fuzz

build() {
    local target=$1
    [[ -n "${SOURCES[$target]:-}" ]] || { echo "fuzz: unknown target $target (see: scripts/fuzz.sh list)" >&2; exit 2; }
    mkdir -p "$OUT"
    # shellcheck disable=SC2086
    swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name Fuzz${target//_/} \
        "scripts/fuzz/targets/$target.swift" ${SOURCES[$target]} -o "$OUT/$target" >&2
}

run() {
    local target=$1 seconds=$2
    build "$target"
    local corpus="$OUT/corpus/$target"
    mkdir -p "$corpus" "$OUT/artifacts/$target"
    echo "fuzz: $target for ${seconds}s" >&2
    # -timeout: one input taking over 10 s is a finding; -rss_limit_mb bounds memory.
    # Swift's own crash backtracer and ASan both want the crash: leave it to ASan.
    SWIFT_BACKTRACE=enable=no "$OUT/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$target/" "$corpus" "scripts/fuzz/seeds/$target"
}

case "${1:-}" in
    list) printf '%s\n' "${!SOURCES[@]}" | sort ;;
    run) [[ $# -eq 3 ]] || { echo "usage: scripts/fuzz.sh run TARGET SECONDS" >&2; exit 2; }; run "$2" "$3" ;;
    all)
        # Each target's output goes to .build-fuzz/TARGET.log; a failing one is shown.
        [[ $# -eq 2 ]] || { echo "usage: scripts/fuzz.sh all SECONDS" >&2; exit 2; }
        mkdir -p "$OUT"
        failed=0
        for target in $(printf '%s\n' "${!SOURCES[@]}" | sort); do
            if run "$target" "$2" >"$OUT/$target.log" 2>&1; then
                echo "fuzz: $target: $(awk '/number_of_executed_units/ {print $NF}' "$OUT/$target.log") runs, no finding"
            else
                echo "fuzz: $target FAILED:" >&2
                tail -60 "$OUT/$target.log" >&2
                failed=1
            fi
        done
        exit "$failed"
        ;;
    *) echo "usage: scripts/fuzz.sh list | run TARGET SECONDS | all SECONDS" >&2; exit 2 ;;
esac
