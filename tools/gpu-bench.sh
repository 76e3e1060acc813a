#!/usr/bin/env bash
# End-to-end GPU benchmark on a CUDA host (the H100 of docs/perf.md): NVDEC -> CUDA
# preprocess -> ONNX Runtime CUDA EP (YOLOv8n fp16, batch-dynamic) -> CUDA NMS, over
# 1/8/16/32 streams of a 1080p H.264 clip, plus a decode-only run at 16 streams.
# VARIANTS=1: engine option variants at 16 streams and batch 32 at 32 streams instead.
#
# Usage: tools/gpu-bench.sh DIR OUTDIR
#   DIR holds: jetwatch (release, --features cuda13,nvdec), cam1080.h264,
#   yolov8n_fp16_dyn.onnx (tools/make_dynamic_batch.py), yolov8n_fp16.onnx (batch 1), and
#   ORT_DIR (default /tmp/ortcuda) holds the onnxruntime-gpu 1.31.1 wheel's
#   onnxruntime/capi/*.so* (libonnxruntime_providers_cuda.so may be given as part0* pieces).
# cuDNN 9 / cuBLAS / cudart / cuFFT / cuRAND for CUDA 13 are searched under /opt, /usr/local
# and /usr/lib (the NVIDIA PyPI wheels' lib/ folders or a toolkit).
set -u
D=${1:?dir}; OUTD=${2:?outdir}; ORT_DIR=${ORT_DIR:-/tmp/ortcuda}
DUR=${DUR:-8}
mkdir -p "$OUTD"
if [ ! -f "$ORT_DIR/libonnxruntime_providers_cuda.so" ] && ls "$ORT_DIR"/part0* >/dev/null 2>&1; then
    cat "$ORT_DIR"/part0* > "$ORT_DIR/libonnxruntime_providers_cuda.so"
fi
(cd "$ORT_DIR" && ln -sf libonnxruntime.so.1.31.1 libonnxruntime.so && sha256sum libonnxruntime_providers_cuda.so libonnxruntime.so.1.31.1) | tee "$OUTD/sums.txt"
libdirs=""
for n in libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcufft.so.12 libcurand.so.10; do
    f=$(find /opt /usr/local /usr/lib -name "$n" 2>/dev/null | head -n1)
    [ -n "$f" ] && libdirs="$libdirs:$(dirname "$f")" || echo "not found: $n" | tee -a "$OUTD/sums.txt"
done
export LD_LIBRARY_PATH="$ORT_DIR$libdirs:${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$ORT_DIR/libonnxruntime.so.1.31.1"
export JETWATCH_DEVICE=cuda RUST_LOG=${RUST_LOG:-warn}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUTD/smi.txt" 2>&1
B="$D/jetwatch"; CLIP="$D/cam1080.h264"
if [ "${VARIANTS:-0}" = 1 ]; then
    # Engine variants at 16 streams (JETWATCH_ORT_CUDA_OPTIONS: extra CUDA EP options), and
    # batch 32 at 32 streams.
    for V in "cudnn_conv_algo_search=EXHAUSTIVE" "cudnn_conv_algo_search=EXHAUSTIVE,prefer_nhwc=1"; do
        JETWATCH_ORT_CUDA_OPTIONS="$V" timeout 150 "$B" bench --mode e2e --clip "$CLIP" --model "$D/yolov8n_fp16_dyn.onnx" --streams 16 --batch 16 --duration "$DUR" --json 2>> "$OUTD/bench.err" | sed "s/^{/{\"variant\":\"$V\",/" >> "$OUTD/variants.jsonl"
    done
    timeout 150 "$B" bench --mode e2e --clip "$CLIP" --model "$D/yolov8n_fp16_dyn.onnx" --streams 32 --batch 32 --duration "$DUR" --json >> "$OUTD/variants.jsonl" 2>> "$OUTD/bench.err"
    timeout 60 "$B" bench --mode decode --clip "$CLIP" --model "$D/yolov8n_fp16.onnx" --streams 16 --duration 5 --json >> "$OUTD/decode.json" 2>> "$OUTD/bench.err"
    cat "$OUTD/variants.jsonl" "$OUTD/decode.json"; grep -v mqtt "$OUTD/bench.err" | tail -n 20
    exit 0
fi
# Batch 1 on the shared fixed-batch model (batch 1 must keep working).
timeout 90 "$B" bench --mode e2e --clip "$CLIP" --model "$D/yolov8n_fp16.onnx" --streams 1 --batch 1 --duration 4 --json >> "$OUTD/bench.jsonl" 2>> "$OUTD/bench.err"
for S in 1 8 16 32; do
    BATCH=$(( S < 16 ? S : 16 ))
    nvidia-smi --query-gpu=memory.used,utilization.gpu,utilization.decoder --format=csv,noheader -lms 1000 > "$OUTD/smi_$S.csv" 2>&1 &
    SMI=$!
    timeout 120 "$B" bench --mode e2e --clip "$CLIP" --model "$D/yolov8n_fp16_dyn.onnx" --streams "$S" --batch "$BATCH" --duration "$DUR" --json >> "$OUTD/bench.jsonl" 2>> "$OUTD/bench.err"
    echo "streams $S rc $?" >> "$OUTD/bench.err"
    kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null
done
timeout 60 "$B" bench --mode decode --clip "$CLIP" --model "$D/yolov8n_fp16.onnx" --streams 16 --duration 5 --json >> "$OUTD/decode.json" 2>> "$OUTD/bench.err"
cat "$OUTD/bench.jsonl" "$OUTD/decode.json"; grep -v mqtt "$OUTD/bench.err" | tail -n 30
