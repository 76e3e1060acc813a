#!/usr/bin/env bash
# All GPU kernel checks in one go, and a short table at the end.
#
#   tools/gpu-check.sh prepare DIR   on a development host (no GPU needed): builds the GPU test
#                                    binary (tests/gpu_kernels.rs, --features cuda13, stripped),
#                                    makes the real-data fixtures (tools/gpu-fixtures.py, reads
#                                    ../shared) and copies them and this script into DIR.
#   tools/gpu-check.sh run DIR       on the CUDA host: builds nothing; runs the kernel-vs-CPU-twin
#                                    tests, the allocation test and the timings, then
#                                    compute-sanitizer (memcheck, racecheck) where present.
#                                    Logs go to $OUT (if set) or DIR.
#
# Environment: NVCC (prepare; default: tools/install-nvcc.sh's), JETWATCH_CUDA_ARCHS (prepare),
# JETWATCH_TEST_SEED (run: reproduce a random case).
set -uo pipefail

mode="${1:-}"
dir="${2:-}"
if [ -z "$mode" ] || [ -z "$dir" ]; then
    sed -n '2,16p' "$0"
    exit 2
fi

if [ "$mode" = prepare ]; then
    set -e
    root="$(cd "$(dirname "$0")/.." && pwd)"
    mkdir -p "$dir"
    export NVCC="${NVCC:-$("$root/tools/install-nvcc.sh")}"
    cd "$root"
    bin="$(cargo test --features cuda13 --test gpu_kernels --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu_kernels":
        print(m["executable"])')"
    [ -n "$bin" ] || { echo "gpu-check: build of tests/gpu_kernels.rs failed (run cargo test --features cuda13 --test gpu_kernels --no-run)" >&2; exit 1; }
    strip -o "$dir/gpu_kernels" "$bin"
    python3 "$root/tools/gpu-fixtures.py" "$dir" "${JETWATCH_SHARED:-$root/../shared}"
    cp "$0" "$dir/gpu-check.sh"
    git -C "$root" rev-parse HEAD > "$dir/COMMIT"
    du -sh "$dir"
    exit 0
fi

[ "$mode" = run ] || { echo "gpu-check: unknown mode $mode (prepare or run)" >&2; exit 2; }
log="${OUT:-$dir}"
mkdir -p "$log"
export JETWATCH_REQUIRE_GPU=1 JETWATCH_GPU_FIXTURES="$dir"
bin="$dir/gpu_kernels"
status=0
{
    echo "commit: $(cat "$dir/COMMIT" 2>/dev/null || echo unknown)"
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
        | sed 's/^/gpu: /'
} | tee "$log/gpu-check.log"

echo "== tests + timings" | tee -a "$log/gpu-check.log"
"$bin" --include-ignored --test-threads=1 --nocapture 2>&1 | tee -a "$log/gpu-check.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

san=""
for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer; do
    command -v "$c" >/dev/null 2>&1 && { san="$c"; break; }
done
if [ -n "$san" ]; then
    echo "== compute-sanitizer memcheck (tests, no timings)" | tee -a "$log/gpu-check.log"
    timeout 300 "$san" --tool memcheck --error-exitcode 9 "$bin" --test-threads=1 \
        > "$log/memcheck.log" 2>&1
    rc=$?
    tail -n 4 "$log/memcheck.log"
    echo "RESULT compute-sanitizer memcheck: exit $rc ($(grep -c 'Invalid' "$log/memcheck.log") invalid accesses)" | tee -a "$log/gpu-check.log"
    [ $rc = 0 ] || status=1
    echo "== compute-sanitizer racecheck (postprocess on the real output)" | tee -a "$log/gpu-check.log"
    timeout 200 "$san" --tool racecheck --error-exitcode 9 "$bin" --test-threads=1 \
        postprocess_matches_cpu_twin_on_real_yolov8n_output > "$log/racecheck.log" 2>&1
    rc=$?
    tail -n 3 "$log/racecheck.log"
    echo "RESULT compute-sanitizer racecheck: exit $rc" | tee -a "$log/gpu-check.log"
    [ $rc = 0 ] || status=1
else
    echo "RESULT compute-sanitizer: not installed, skipped" | tee -a "$log/gpu-check.log"
fi

ncu=""
for c in ncu /usr/local/cuda/bin/ncu; do
    command -v "$c" >/dev/null 2>&1 && { ncu="$c"; break; }
done
if [ -n "$ncu" ]; then
    echo "== Nsight Compute: postprocess kernels on a random output (B=1, ~1700 candidates)" | tee -a "$log/gpu-check.log"
    timeout 120 "$ncu" --clock-control none --metrics gpu__time_duration.sum --kernel-name regex:jw_ \
        "$bin" --include-ignored --test-threads=1 --exact profile_postprocess_random > "$log/ncu.log" 2>&1
    awk '/jw_post_[a-z0-9_]+/ {k=$1} /gpu__time_duration.sum/ {print "RESULT ncu " k ": " $(NF) " " $(NF-1)}' "$log/ncu.log" \
        | tail -n 2 | tee -a "$log/gpu-check.log"
    echo "== Nsight Compute: preprocess kernel, 1080p -> 640x640 f16, B=1 then B=16" | tee -a "$log/gpu-check.log"
    timeout 120 "$ncu" --clock-control none --metrics gpu__time_duration.sum,dram__bytes.sum --kernel-name regex:jw_ \
        "$bin" --include-ignored --test-threads=1 --exact profile_preprocess_1080p > "$log/ncu-pre.log" 2>&1
    awk '/jw_preprocess_[a-z0-9_]+/ {k=$1; n++} /gpu__time_duration.sum|dram__bytes.sum/ {print "RESULT ncu " k " #" n ": " $1 " " $(NF) " " $(NF-1)}' \
        "$log/ncu-pre.log" | tee -a "$log/gpu-check.log"
fi

echo
echo "================ gpu-check summary ================"
grep -E '^(gpu|commit|date):' "$log/gpu-check.log"
grep -E '^test .* \.\.\. ' "$log/gpu-check.log" | sed 's/^test /  /'
grep -E '^RESULT ' "$log/gpu-check.log" | sed 's/^RESULT /  /'
echo "overall: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
