#!/usr/bin/env bash
# TensorRT's runtime half on a real CUDA host that has no full TensorRT, plus the GPU
# pipeline's engine selection. NVIDIA publishes its runtime-only library (libnvinfer_lean:
# getInferLibVersion, createInferRuntime, no builder) on PyPI as tensorrt-lean-cu13-libs; the
# full libnvinfer and the ONNX parser are not downloadable here, so no plan can be built and
# nothing is inferred with TensorRT. What this does run, through jetwatch's shim:
#   - `jetwatch probe` finds the library through JETWATCH_NVINFER and reports its version;
#   - `engine inspect` on a corrupt plan: dlopen, version gate, IRuntime creation, the logger
#     callback into Rust, and deserializeCudaEngine's real error text;
#   - `engine build --dla 0`: IRuntime::getNbDLACores() on a GPU without DLA, and the refusal;
#   - `engine build`: the clear "runtime-only library cannot build" error;
#   - `demo` with engine = auto: TensorRT preferred, its engine cannot be made, ONNX Runtime's
#     CUDA provider runs instead and the warning is printed (and put in the status message); detections are
#     compared with the CPU pipeline's (tools/compare_detections.py);
#   - `run` with engine = "tensorrt": fails at start with the reason.
#
# Usage: tools/trt-runtime-check.sh DIR OUTDIR
#   DIR holds: jetwatch (release, --features cuda13,nvdec,tensorrt), demo_cpu.txt (`jetwatch
#   demo --json --fast` of the CPU pipeline on the default clip and model), compare_detections.py,
#   the default clip and model (TUD-Campus_h264.mp4, yolov8n_fp32.onnx.gz), and
#   tensorrt_lean_cu13_libs-*.whl (pip download --no-deps tensorrt-lean-cu13-libs==10.16.1.11).
#   ORT_DIR (default /tmp/ortcuda) holds the onnxruntime-gpu wheel's capi/*.so* as for
#   tools/gpu-bench.sh.
set -u
D=${1:?dir}; OUTD=${2:?outdir}; ORT_DIR=${ORT_DIR:-/tmp/ortcuda}
mkdir -p "$OUTD"
B="$D/jetwatch"
if [ ! -f "$ORT_DIR/libonnxruntime_providers_cuda.so" ] && ls "$ORT_DIR"/part0* >/dev/null 2>&1; then
    cat "$ORT_DIR"/part0* > "$ORT_DIR/libonnxruntime_providers_cuda.so"
fi
(cd "$ORT_DIR" && ln -sf libonnxruntime.so.1.31.1 libonnxruntime.so)
libdirs=""
for n in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcufft.so.12 libcurand.so.10; do
    f=$(find /opt /usr/local /usr/lib -name "$n" 2>/dev/null | head -n1)
    [ -n "$f" ] && libdirs="$libdirs:$(dirname "$f")"
done
export LD_LIBRARY_PATH="$ORT_DIR$libdirs:${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$ORT_DIR/libonnxruntime.so.1.31.1"
export JETWATCH_SHARED="$OUTD/shared"
mkdir -p "$JETWATCH_SHARED/models" "$JETWATCH_SHARED/media"
cp "$D/yolov8n_fp32.onnx.gz" "$JETWATCH_SHARED/models/"
cp "$D/TUD-Campus_h264.mp4" "$JETWATCH_SHARED/media/"
MODEL="$JETWATCH_SHARED/models/yolov8n_fp32.onnx.gz"

LEAN_DIR=/tmp/trtlean
mkdir -p "$LEAN_DIR"
python3 -m zipfile -e "$D"/tensorrt_lean_cu13_libs-*.whl "$LEAN_DIR" >/dev/null
LEAN=$(find "$LEAN_DIR" -name 'libnvinfer_lean.so.10' | head -n1)
echo "lean library: $LEAN" | tee "$OUTD/summary.txt"

step() { echo "== $1" | tee -a "$OUTD/summary.txt"; }
rc_of() { echo "rc=$1" | tee -a "$OUTD/summary.txt"; }

step "probe without TensorRT"
"$B" probe --json > "$OUTD/probe.json" 2>&1; rc_of $?
step "probe with JETWATCH_NVINFER=libnvinfer_lean"
JETWATCH_NVINFER="$LEAN" "$B" probe --json > "$OUTD/probe_lean.json" 2>&1; rc_of $?
python3 - "$OUTD/probe_lean.json" <<'EOF' | tee -a "$OUTD/summary.txt"
import json, sys
p = json.load(open(sys.argv[1]))
for b in p["backends"]:
    if "tensorrt" in json.dumps(b).lower():
        print("probe:", json.dumps(b))
EOF

step "engine inspect of a corrupt plan (runtime open, logger, deserialize error)"
head -c 65536 /dev/urandom > "$OUTD/corrupt.engine"
JETWATCH_NVINFER="$LEAN" RUST_LOG=info "$B" engine inspect "$OUTD/corrupt.engine" > "$OUTD/inspect.txt" 2>&1; rc_of $?
tail -n 5 "$OUTD/inspect.txt" | tee -a "$OUTD/summary.txt"
rm -f "$OUTD/corrupt.engine"

step "engine build --dla 0 on a GPU without DLA (getNbDLACores)"
JETWATCH_NVINFER="$LEAN" "$B" engine build "$MODEL" --dla 0 --cache "$OUTD/cache" > "$OUTD/build_dla.txt" 2>&1; rc_of $?
tail -n 3 "$OUTD/build_dla.txt" | tee -a "$OUTD/summary.txt"

step "engine build with the runtime-only library"
JETWATCH_NVINFER="$LEAN" "$B" engine build "$MODEL" --cache "$OUTD/cache" > "$OUTD/build.txt" 2>&1; rc_of $?
tail -n 3 "$OUTD/build.txt" | tee -a "$OUTD/summary.txt"

step "demo on the GPU, no TensorRT (ONNX Runtime CUDA)"
RUST_LOG=info timeout 120 "$B" demo --json --fast > "$OUTD/demo_ort.txt" 2> "$OUTD/demo_ort.err"; rc_of $?
grep -E "^decoder:|^warning" "$OUTD/demo_ort.err" | tee -a "$OUTD/summary.txt"
python3 "$D/compare_detections.py" "$OUTD/demo_ort.txt" "$D/demo_cpu.txt" 2>&1 | tail -n 3 | tee -a "$OUTD/summary.txt"

step "demo on the GPU, engine = auto with libnvinfer_lean (TensorRT preferred, falls back)"
JETWATCH_NVINFER="$LEAN" RUST_LOG=info timeout 120 "$B" demo --json --fast > "$OUTD/demo_auto.txt" 2> "$OUTD/demo_auto.err"; rc_of $?
grep -E "^decoder:|^warning|engine: TensorRT" "$OUTD/demo_auto.err" | tee -a "$OUTD/summary.txt"
python3 "$D/compare_detections.py" "$OUTD/demo_auto.txt" "$D/demo_cpu.txt" 2>&1 | tail -n 3 | tee -a "$OUTD/summary.txt"

step "run with engine = tensorrt and the runtime-only library (must fail at start)"
cat > "$OUTD/trt.toml" <<EOF
device_id = "trt"
[broker]
port = 18883
[[cameras]]
name = "c"
url = "$JETWATCH_SHARED/media/TUD-Campus_h264.mp4"
pacing = "fast"
[model]
path = "$MODEL"
[pipeline]
engine = "tensorrt"
device = "cuda"
[tensorrt]
cache_dir = "$OUTD/cache"
EOF
JETWATCH_NVINFER="$LEAN" timeout 60 "$B" run --config "$OUTD/trt.toml" --max-frames 5 > "$OUTD/run_trt.txt" 2>&1; rc_of $?
grep -v mqtt "$OUTD/run_trt.txt" | tail -n 3 | tee -a "$OUTD/summary.txt"
rm -rf "$JETWATCH_SHARED"
