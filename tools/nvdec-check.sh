#!/usr/bin/env bash
# NVDEC checks and decode-only benchmark on a CUDA host.
#
#   tools/nvdec-check.sh prepare [DEST]   on the build host: builds the optimised test binary
#                                         (features cuda13,nvdec) and copies it with the media
#                                         it needs into DEST (default .devcarry/nvdec)
#   tools/nvdec-check.sh run [DIR]        on the GPU host (no Rust needed): runs tests/nvdec.rs
#                                         with JETWATCH_REQUIRE_GPU=1, then the decode-only bench
#                                         (1 and 16 streams, H.264 and H.265 1080p), and prints a
#                                         table. Logs and JSON go to $OUT (or DIR/out).
# Env for prepare: JETWATCH_SHARED (default ../shared), CARGO_TARGET_DIR.
# Env for run: BENCH_SECS (default 5), BENCH_STREAMS (default 1,16), BENCH_DELAYS (default 0,4).
set -euo pipefail
mode=${1:-}
case "$mode" in
prepare)
  root=$(cd "$(dirname "$0")/.." && pwd)
  dest=${2:-$root/.devcarry/nvdec}
  media=${JETWATCH_SHARED:-$root/../shared}/media
  mkdir -p "$dest/media"
  cd "$root"
  # Optimise our two crates like the dependencies (dev profile keeps deps at opt-level 2).
  exe=$(CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo test --features cuda13,nvdec --test nvdec --no-run \
        --message-format=json 2>/dev/null \
        | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="nvdec": print(m["executable"])')
  [ -n "$exe" ] || { echo "build failed: run the cargo command above by hand" >&2; exit 1; }
  cp "$exe" "$dest/nvdec-tests" && strip "$dest/nvdec-tests"
  cp "$0" "$dest/nvdec-check.sh"
  for f in TUD-Campus.h264 TUD-Campus.h265 bikes.h264 car-detection.h265 cam1080.h264; do
    cp "$media/$f" "$dest/media/"
  done
  ffmpeg -v error -y -i "$media/cam1080_h265.mp4" -c:v copy -bsf:v hevc_mp4toannexb -f hevc "$dest/media/cam1080.h265"
  du -sh "$dest"
  ;;
run)
  dir=${2:-$(dirname "$0")}
  out=${OUT:-$dir/out}; mkdir -p "$out"
  echo "== host"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
  nvidia-smi -q | grep -iE -A4 "^\s*(Encoder Stats|FBC Stats|Decoder)" | head -20 || true
  ldconfig -p | grep -E "libnvcuvid|libcuda\.so" || echo "libnvcuvid/libcuda not in ldconfig cache"
  command -v ffmpeg || echo "no ffmpeg on this host (reference hashes are embedded in the test binary)"
  nproc
  echo "== tests"
  set +e
  JETWATCH_SHARED=$dir JETWATCH_REQUIRE_GPU=1 "$dir/nvdec-tests" --test-threads=1 --nocapture \
    --skip garbage 2>&1 | tee "$out/tests.log"
  trc=${PIPESTATUS[0]}
  # Garbage input last and alone, so a crash inside the vendor parser cannot hide other results.
  JETWATCH_SHARED=$dir JETWATCH_REQUIRE_GPU=1 "$dir/nvdec-tests" --test-threads=1 --nocapture \
    garbage 2>&1 | tee -a "$out/tests.log"
  grc=${PIPESTATUS[0]}; [ "$grc" -eq 0 ] || trc=$grc
  echo "== bench"
  JETWATCH_SHARED=$dir NVDEC_BENCH_FILES="$dir/media/cam1080.h264,$dir/media/cam1080.h265" \
    NVDEC_BENCH_STREAMS=${BENCH_STREAMS:-1,16} NVDEC_BENCH_DELAYS=${BENCH_DELAYS:-0,4} \
    NVDEC_BENCH_SECS=${BENCH_SECS:-5} NVDEC_BENCH_OUT="$out/bench.jsonl" \
    "$dir/nvdec-tests" --ignored bench --nocapture > "$out/bench.log" 2>&1
  brc=$?
  set -e
  echo "== summary (tests rc=$trc, bench rc=$brc)"
  grep -E "^test |NVDEC_(BITEXACT|RESCHANGE|GARBAGE)|test result" "$out/tests.log" || true
  tail -5 "$out/bench.log"
  python3 - "$out/bench.jsonl" <<'PY' || true
import json, sys
print(f"{'file':14} {'delay':>5} {'streams':>7} {'fps total':>10} {'fps/stream':>10} {'cpu ms/f':>9} {'alloc/f':>8} {'corrupt':>7} {'drop':>5}")
for l in open(sys.argv[1]):
    r = json.loads(l.split(' ', 1)[1])
    per = sum(r['fps_per_stream']) / len(r['fps_per_stream'])
    print(f"{r['file'].split('/')[-1]:14} {r['max_display_delay']:>5} {r['streams']:>7} {r['fps_total']:>10.0f} {per:>10.0f} {r['cpu_ms_per_frame']:>9.3f} {r['allocations_per_frame'] or 0:>8.3f} {r['corrupt']:>7} {r['dropped']:>5}")
PY
  exit $(( trc != 0 || brc != 0 ))
  ;;
*) sed -n 2,14p "$0"; exit 2 ;;
esac
