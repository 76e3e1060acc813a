#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with libFuzzer's coverage instrumentation (the flags
# cargo-fuzz uses, no sanitizer, so it is fast) on the stable toolchain, and runs each for a
# short time on a seed corpus made from ../shared/media and the repository's configs.
#
#   tools/fuzz.sh [seconds-per-target]     (default 15)
#
# Env: JETWATCH_SHARED (default ../shared next to the repo), FUZZ_TARGET_DIR (default
# fuzz/target), FUZZ_TARGETS (default "au_assembly sps config"; tools/test.sh adds
# wire_decode, which needs FUZZ_FEATURES=wire, and onnx_summary).
# Crashes land in fuzz/artifacts/<target>/ and make the script fail.
set -euo pipefail

secs=${1:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${JETWATCH_SHARED:-$root/../shared}
targets=${FUZZ_TARGETS:-"au_assembly sps config"}
features=${FUZZ_FEATURES:-}

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$root/fuzz/target}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

# With an explicit --target, RUSTFLAGS reach only target code, not build scripts (as in
# cargo-fuzz), so build scripts link without the libFuzzer runtime.
host=$(rustc -vV | sed -n 's/^host: //p')
start=$(date +%s)
bins=()
for t in $targets; do bins+=(--bin "$t"); done
(cd "$root/fuzz" && cargo build --release --target "$host" ${features:+--features "$features"} "${bins[@]}")
echo "fuzz: build took $(( $(date +%s) - start )) s"

corpus=$root/fuzz/corpus
mkdir -p "$corpus"
seed() { # seed TARGET: fill the corpus directory of TARGET once
    local dir=$corpus/$1
    mkdir -p "$dir"
    case $1 in
    au_assembly|sps)
        if [ -d "$shared/media" ]; then
            for f in "$shared"/media/*.h264 "$shared"/media/*.h265; do
                [ -f "$f" ] || continue
                head -c 2048 "$f" >"$dir/$(basename "$f").2k"
                if [ "$1" = au_assembly ]; then
                    head -c 8192 "$f" >"$dir/$(basename "$f").8k"
                fi
            done
        else
            echo "fuzz: no $shared/media; starting $1 from an empty corpus" >&2
        fi
        ;;
    config)
        find "$root" -name '*.toml' -not -path '*/target/*' -not -name Cargo.toml \
            -exec cp {} "$dir/" \; 2>/dev/null || true
        cat >"$dir/minimal.toml" <<'TOML'
device_id = "cam-box-1"

[broker]
host = "127.0.0.1"
port = 1883

[[cameras]]
name = "door"
path = "media/TUD-Campus.h264"
loop = true

[model]
path = "models/yolov8n.onnx"
score_threshold = 0.25
TOML
        ;;
    onnx_summary)
        # A tiny complete model (the `onnx` package, if installed) and the first 64 KiB of
        # each shared model (the graph's inputs, outputs and metadata come after the weights
        # in exporter output, so those seeds are truncated on purpose: error paths).
        python3 - "$dir/tiny_detector.onnx" <<'PY' 2>/dev/null || true
import sys
from onnx import TensorProto, helper
x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])
y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 3, 64, 64])
g = helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "g", [x], [y])
m = helper.make_model(g)
helper.set_model_props(m, {"names": "{0: 'person'}", "stride": "32"})
open(sys.argv[1], "wb").write(m.SerializeToString())
PY
        for f in "$shared"/models/*.onnx; do
            [ -f "$f" ] && head -c 65536 "$f" >"$dir/$(basename "$f").64k"
        done
        ;;
    *)
        printf '\x01\x00' >"$dir/tiny"
        ;;
    esac
}

status=0
for t in $targets; do
    seed "$t"
    mkdir -p "$root/fuzz/artifacts/$t"
    echo "fuzz: $t for ${secs}s"
    if ! "$CARGO_TARGET_DIR/$host/release/$t" "$corpus/$t" -max_total_time="$secs" \
        -artifact_prefix="$root/fuzz/artifacts/$t/" -print_final_stats=1 -max_len=65536 \
        2>"$CARGO_TARGET_DIR/$t.log"; then
        tail -n 40 "$CARGO_TARGET_DIR/$t.log" >&2
        echo "fuzz: $t FAILED (artifacts in fuzz/artifacts/$t/)" >&2
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added" "$CARGO_TARGET_DIR/$t.log" \
            | sed "s/^/fuzz: $t: /" || true
    fi
done
echo "fuzz: total $(( $(date +%s) - start )) s"
exit $status
