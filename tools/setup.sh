#!/usr/bin/env bash
# Installs what jetwatch needs on a Debian 12 host (idempotent): mosquitto (demo and tests),
# ffmpeg (test media), and ONNX Runtime's CPU library from the PyPI `onnxruntime` wheel
# (jetwatch opens libonnxruntime.so at run time; nothing is downloaded at build time).
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.32.0}"
need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# mosquitto's package starts a system broker on :1883; jetwatch's tests start their own on
# free ports, and the demo starts its own too.

if ! python3 -c "import onnxruntime, onnx" >/dev/null 2>&1; then
  echo "setup: pip install onnxruntime==${ORT_VERSION} onnx"
  python3 -m pip install -q "onnxruntime==${ORT_VERSION}" onnx 2>&1 | grep -v "WARNING: Running pip as the 'root' user" || true
fi
ort_lib=$(python3 -c "import onnxruntime, os, glob; d = os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'); print(sorted(glob.glob(os.path.join(d, 'libonnxruntime.so*')))[-1])")
echo "setup: ONNX Runtime library: ${ort_lib}"
echo "setup: done"
