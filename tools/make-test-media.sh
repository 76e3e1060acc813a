#!/usr/bin/env bash
# Makes small synthetic and odd bitstreams for the source tests, with Debian's ffmpeg, into
# target/test-media/ (never committed). tests/sources.rs uses what it finds there; the real
# clips stay in ../shared/media (see its README).
#
#   tools/make-test-media.sh [outdir]
#
# Files:
#   mpeg4.mp4         MPEG-4 Part 2 ('mp4v' sample entry): must be refused as an unknown codec
#   av1.mp4           AV1 ('av01'), when this ffmpeg has an AV1 encoder
#   no-sps.h264       TUD-Campus.h264 with every SPS/PPS removed (filter_units): no stream info
#   res-change.h264   320x240 then 640x480 in one Annex-B stream (two IDR-led sequences)
#   cut-in-nal.h264   TUD-Campus.h264 cut in the middle of a slice NAL unit
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/test-media}
shared=${JETWATCH_SHARED:-$root/../shared}
media=$shared/media
command -v ffmpeg >/dev/null || { echo "make-test-media: ffmpeg is not installed (apt-get install ffmpeg)" >&2; exit 1; }
mkdir -p "$out"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

ff -f lavfi -i "testsrc2=size=320x240:rate=25" -t 1 -c:v mpeg4 -pix_fmt yuv420p "$out/mpeg4.mp4"
if ffmpeg -hide_banner -encoders 2>/dev/null | grep -q libaom-av1; then
    ff -f lavfi -i "testsrc2=size=160x120:rate=25" -t 0.2 -c:v libaom-av1 -cpu-used 8 "$out/av1.mp4"
fi
ff -i "$media/TUD-Campus.h264" -c copy -bsf:v "filter_units=remove_types=7|8" -f h264 "$out/no-sps.h264"
ff -f lavfi -i "testsrc2=size=320x240:rate=25" -t 1 -c:v libx264 -profile:v main -bf 0 -g 25 \
    -pix_fmt yuv420p -f h264 "$out/a.h264"
ff -f lavfi -i "testsrc2=size=640x480:rate=25" -t 1 -c:v libx264 -profile:v main -bf 0 -g 25 \
    -pix_fmt yuv420p -f h264 "$out/b.h264"
cat "$out/a.h264" "$out/b.h264" >"$out/res-change.h264"
rm -f "$out/a.h264" "$out/b.h264"
head -c 200000 "$media/TUD-Campus.h264" >"$out/cut-in-nal.h264"
ls -l "$out"
