#!/usr/bin/env bash
# Makes an H.264 MP4 that shows one real frame for N frames (a static scene): the first
# picture of a source clip, repeated and encoded with x264. Used by the on-change publish test.
# usage: tools/make-still-clip.sh SOURCE.mp4 OUT.mp4 [frames=30]
set -euo pipefail
src="$1"; out="$2"; frames="${3:-30}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ffmpeg -loglevel error -y -i "$src" -frames:v 1 "$tmp/still.png"
ffmpeg -loglevel error -y -loop 1 -framerate 10 -i "$tmp/still.png" -frames:v "$frames" \
  -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -bf 0 -g 100 "$out"
