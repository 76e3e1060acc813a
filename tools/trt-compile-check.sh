#!/usr/bin/env bash
# Compile-checks jetwatch's TensorRT shim against one or more TensorRT header trees, and the
# Rust side with the `tensorrt` feature. TensorRT itself is never needed: only its headers.
#
# usage: tools/trt-compile-check.sh [--no-cargo] TRT_INCLUDE_DIR...
#   TRT_INCLUDE_DIR  a directory with NvInfer.h, NvInferVersion.h and NvOnnxParser.h
#                    (JetPack: /usr/include/aarch64-linux-gnu; or the include/ folder of
#                    github.com/NVIDIA/TensorRT at a tag, plus NvOnnxParser.h from
#                    onnx/onnx-tensorrt for 10.x tags, where it is a submodule)
# env:
#   CUDA_INCLUDE     directory with cuda_runtime_api.h (NvInfer.h includes it); e.g. the
#                    nvidia/cu13/include folder of the PyPI wheels nvidia-cuda-runtime and
#                    nvidia-cuda-crt. Required unless the compiler finds it by default.
#   CXX              C++ compiler (default g++)
#   CARGO_FEATURES   features for the cargo step (default cuda13,tensorrt)
#
# For each header tree: g++ -std=c++17 -Wall -Wextra -Werror -c shim.cpp (TensorRT and CUDA
# headers as -isystem, so their own deprecation warnings do not count), then `nm -u` on the
# object must show no TensorRT symbol (the shim dlopens libnvinfer; nothing may link it).
# Then, with the first tree as TENSORRT_INCLUDE: cargo check --features $CARGO_FEATURES.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_cargo=1
if [[ "${1:-}" == "--no-cargo" ]]; then
    run_cargo=0
    shift
fi
if [[ $# -lt 1 ]]; then
    sed -n '2,22p' "$0" >&2
    exit 2
fi

cxx="${CXX:-g++}"
cuda_flags=()
if [[ -n "${CUDA_INCLUDE:-}" ]]; then
    if [[ ! -f "$CUDA_INCLUDE/cuda_runtime_api.h" ]]; then
        echo "CUDA_INCLUDE=$CUDA_INCLUDE has no cuda_runtime_api.h" >&2
        exit 2
    fi
    cuda_flags=(-isystem "$CUDA_INCLUDE")
fi

obj_dir="$(mktemp -d)"
trap 'rm -rf "$obj_dir"' EXIT
status=0
first=""
for inc in "$@"; do
    inc="$(cd "$inc" && pwd)"
    for h in NvInfer.h NvInferVersion.h NvOnnxParser.h; do
        if [[ ! -f "$inc/$h" ]]; then
            echo "FAIL $inc: no $h" >&2
            status=1
            continue 2
        fi
    done
    ver="$(awk '/#define (NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? [0-9]/ {print $3}' "$inc/NvInferVersion.h" | head -3 | paste -sd.)"
    obj="$obj_dir/shim-$ver.o"
    if "$cxx" -std=c++17 -Wall -Wextra -Werror -c "$here/ffi/tensorrt/shim.cpp" \
        -I "$here/ffi/tensorrt" -isystem "$inc" "${cuda_flags[@]}" -o "$obj"; then
        trt_syms="$(nm -u "$obj" | grep -E 'nvinfer|nvonnxparser|_INTERNAL|getInferLibVersion' || true)"
        if [[ -n "$trt_syms" ]]; then
            echo "FAIL TensorRT $ver: the shim references TensorRT symbols (it must only dlsym them):" >&2
            echo "$trt_syms" >&2
            status=1
        else
            echo "ok   TensorRT $ver ($inc): shim.cpp compiles with -Wall -Wextra -Werror; no TensorRT symbol referenced"
        fi
    else
        echo "FAIL TensorRT $ver ($inc): shim.cpp does not compile" >&2
        status=1
    fi
    [[ -z "$first" ]] && first="$inc"
done

if [[ $run_cargo -eq 1 && -n "$first" ]]; then
    features="${CARGO_FEATURES:-cuda13,tensorrt}"
    for inc in "$@"; do
        inc="$(cd "$inc" && pwd)"
        if (cd "$here" && TENSORRT_INCLUDE="$inc" cargo check --features "$features" --all-targets); then
            echo "ok   cargo check --features $features with TENSORRT_INCLUDE=$inc"
        else
            echo "FAIL cargo check --features $features with TENSORRT_INCLUDE=$inc" >&2
            status=1
        fi
    done
fi
exit $status
