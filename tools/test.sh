#!/usr/bin/env bash
# Runs jetwatch's whole test suite on a host without a GPU: installs what is missing
# (tools/setup.sh), then the unit and integration tests (real mosquitto, real clips from
# ../shared/media, real models from ../shared/models), the V4L2 decoder tests in a VM, and a
# short fuzz run of every parser.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(python3 -c "import onnxruntime, os, glob; d = os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'); print(sorted(glob.glob(os.path.join(d, 'libonnxruntime.so*')))[-1])")}"
export RUST_LOG="${RUST_LOG:-warn}"

echo "== [$(date +%T)] cargo test (default features) =="
cargo test --workspace --locked

if [ -x tools/vm/run-tests.sh ]; then
  echo "== [$(date +%T)] V4L2 decoder and camera tests in a VM =="
  tools/vm/run-tests.sh
fi

if [ -x tools/fuzz.sh ]; then
  echo "== [$(date +%T)] fuzz (short) =="
  FUZZ_TARGETS="au_assembly sps config wire_decode onnx_summary" FUZZ_FEATURES=wire tools/fuzz.sh "${FUZZ_SECONDS:-6}"
fi
echo "tools/test.sh: all passed"
