#!/usr/bin/env bash
# libFuzzer targets for the parsers Sluice owns, each built with swiftc -sanitize=fuzzer,address
# from its target file and the Sluice sources it exercises (only those are instrumented).
#   scripts/fuzz.sh list                  the targets
#   scripts/fuzz.sh run TARGET SECONDS    build and run one; non-zero on a crash, leak or timeout
#   scripts/fuzz.sh all SECONDS           each target for SECONDS (CI)
# FUZZ_SEED picks libFuzzer's random seed (default 0: a new one each run, to explore); the test
# gate (scripts/test.sh) fixes it, so a commit's gate tries the same inputs on every run and what
# it finds can be reproduced (same seed, empty corpus).
# Targets whose sources import packages (NIO, Yams, jwt-kit, SwiftProtobuf, ...) are compiled
# against Sluice's debug build and linked with its objects: run `swift build` first.
# Seeds are committed in scripts/fuzz/seeds/TARGET; the growing corpus and any crash file stay
# in .build-fuzz/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A SOURCES=(
    [json_scanner]="Sources/SluiceIngest/JSONScanner.swift"
    [request_target]="Sources/SluiceHTTP/RequestTarget.swift Sources/SluiceHTTP/Router.swift Tests/SluiceHTTPTests/PathMatchReference.swift"
    [path_template]="Sources/SluiceConfigReader/PathPattern.swift Sources/SluiceConfigReader/ParameterTemplate.swift Sources/SluiceConfigReader/ConfigError.swift"
    [units]="Sources/SluiceConfigReader/Units.swift"
    [ndjson]="Sources/SluiceIngest/BodyDecoding.swift Sources/SluiceIngest/JSONScanner.swift Sources/SluiceIngest/IngestError.swift"
    [cloudevents]="Sources/SluiceIngest/CloudEvents.swift Sources/SluiceIngest/BodyDecoding.swift Sources/SluiceIngest/JSONScanner.swift Sources/SluiceIngest/IngestError.swift"
    [confluent_rest]="Sources/SluiceIngest/ConfluentREST.swift Sources/SluiceIngest/ConfluentV3.swift Sources/SluiceCore/RFC3339.swift Sources/SluiceIngest/BodyDecoding.swift Sources/SluiceIngest/JSONScanner.swift Sources/SluiceIngest/IngestError.swift"
    [resp]="Sources/SluicePolicy/RESP.swift"
    [kinesis_response]="connectors/kinesis/KinesisSink/PutRecordsResponseReader.swift scripts/fuzz/support/JSONNestingDepth.swift"
    [kafka_statistics]="connectors/kafka/KafkaSink/KafkaStatistics.swift scripts/fuzz/support/JSONNestingDepth.swift"
    [zerobus_record]="connectors/zerobus/ZerobusSink/ZerobusRecordCheck.swift"
    [grpc_publish_request]="Sources/SluiceGRPC/IngestWire.swift Sources/SluiceGRPC/Generated/sluice/v1/ingest.pb.swift"
    [jwt]="$(echo Sources/SluicePolicy/*.swift)"
    [config]="$(echo Sources/SluiceConfig/*.swift)"
    [json_schema]="$(echo Sources/SluiceSchema/*.swift)"
    [spool_record]="Sources/SluiceSpool/SpoolRecord.swift Sources/SluiceSpool/CRC32C.swift"
    [h2c_upgrade]="Sources/SluiceHTTP/H2CUpgrade.swift Sources/SluiceHTTP/RequestTarget.swift"
)
# The targets that import packages, and so link Sluice's debug build.
LINKS_DEBUG_BUILD=" cloudevents confluent_rest grpc_publish_request json_scanner request_target ndjson resp kinesis_response kafka_statistics zerobus_record jwt config json_schema spool_record h2c_upgrade "
OUT=.build-fuzz

# Compiler flags and objects of Sluice's debug build, for targets that import packages: the
# module search paths and C module maps SwiftPM gave the sluice executable, and every object it
# links but its own (main). Written once per build into .build-fuzz/debug-build.*.
debug_build_inputs() {
    local bin
    bin=$(swift build --show-bin-path)
    [[ -x "$bin/sluice" ]] || { echo "fuzz: $1 links Sluice's debug build; run swift build first" >&2; exit 2; }
    if [[ ! -f "$OUT/debug-build.flags" || "$bin/sluice" -nt "$OUT/debug-build.flags" ]]; then
        python3 - "$bin" "$OUT" <<'PY'
import json, os, sys
bin_path, out = sys.argv[1], sys.argv[2]
triple_dir = os.path.dirname(bin_path)
manifest = os.path.join(os.path.dirname(triple_dir), "debug.yaml")
if not os.path.exists(manifest):
    manifest = os.path.join(triple_dir, "debug.yaml")
lines = open(manifest).read().splitlines()
args = None
for i, line in enumerate(lines):
    if not (line.strip().startswith('"C.') and line.strip().endswith('-debug.module":')):
        continue
    for follow in lines[i + 1:i + 12]:
        if follow.strip().startswith("args:"):
            candidate = json.loads(follow.strip()[len("args:"):])
            # The executable's own module (not sluice-loadgen's): it sees every module map.
            if "-module-name" in candidate and candidate[candidate.index("-module-name") + 1] == "sluice":
                args = candidate
            break
    if args is not None:
        break
if args is None:
    sys.exit("fuzz: cannot find the sluice module's compile command in " + manifest)
flags = ["-I", os.path.join(bin_path, "Modules")]
for j, arg in enumerate(args):
    if arg == "-Xcc":
        flags += ["-Xcc", args[j + 1]]
with open(os.path.join(out, "debug-build.flags"), "w") as f:
    f.write("\n".join(flags) + "\n")
# One path a line, quoted where it holds a space; kept as written (a response file for swiftc).
objects = [o for o in open(os.path.join(bin_path, "sluice.product", "Objects.LinkFileList")).read().splitlines()
           if o.strip() and "/sluice.build/" not in o]
with open(os.path.join(out, "debug-build.objects"), "w") as f:
    f.write("\n".join(objects) + "\n")
PY
    fi
}

build() {
    local target=$1
    [[ -n "${SOURCES[$target]:-}" ]] || { echo "fuzz: unknown target $target (see: scripts/fuzz.sh list)" >&2; exit 2; }
    mkdir -p "$OUT"
    local extra=()
    if [[ "$LINKS_DEBUG_BUILD" == *" $target "* ]]; then
        debug_build_inputs "$target"
        mapfile -t extra < "$OUT/debug-build.flags"
        extra+=("@$OUT/debug-build.objects" -lrdkafka -lstdc++ -lm -lz)
    fi
    # shellcheck disable=SC2086
    swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name Fuzz${target//_/} -swift-version 6 \
        "scripts/fuzz/targets/$target.swift" ${SOURCES[$target]} "${extra[@]}" -o "$OUT/$target" >&2
}

run() {
    local target=$1 seconds=$2
    build "$target"
    local corpus="$OUT/corpus/$target"
    mkdir -p "$corpus" "$OUT/artifacts/$target"
    echo "fuzz: $target for ${seconds}s" >&2
    # -timeout: one input taking over 10 s is a finding; -rss_limit_mb bounds memory.
    # Swift's own crash backtracer and ASan both want the crash: leave it to ASan.
    SWIFT_BACKTRACE=enable=no LSAN_OPTIONS="print_suppressions=0:suppressions=$PWD/scripts/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" "$OUT/$target" -seed="${FUZZ_SEED:-0}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
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
