#!/usr/bin/env bash
# Reference hashes for the NVDEC bit-exactness test (tests/nvdec.rs): one SHA-256 per decoded
# frame of the packed NV12 picture (luma rows of `width` bytes, then interleaved CbCr rows),
# from FFmpeg's software decoder. H.264 and H.265 decoding is bit-exact by specification, so
# NVDEC must reproduce every hash.
#
# Usage: tools/nvdec-refs.sh [MEDIA_DIR]   (default ../shared/media; needs ffmpeg)
# Writes tests/data/nvdec/<clip>.sha256 (one lowercase hex hash per line, display order).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
media=${1:-${JETWATCH_SHARED:-$root/../shared}/media}
out=$root/tests/data/nvdec
mkdir -p "$out"
command -v ffmpeg >/dev/null || { echo "ffmpeg not found (Debian: apt-get install ffmpeg)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# cam1080 H.265 exists only as MP4: make the Annex-B stream the same way the README does.
ffmpeg -v error -y -i "$media/cam1080_h265.mp4" -c:v copy -bsf:v hevc_mp4toannexb -f hevc "$tmp/cam1080.h265"
for clip in TUD-Campus.h264 TUD-Campus.h265 bikes.h264 car-detection.h265 cam1080.h264 cam1080.h265; do
  src=$media/$clip; [ -f "$src" ] || src=$tmp/$clip
  ffmpeg -v error -i "$src" -f framehash -hash sha256 -pix_fmt nv12 - \
    | awk -F', *' '!/^#/ {print $6}' > "$out/$clip.sha256"
  echo "$clip: $(wc -l < "$out/$clip.sha256") frames"
done
