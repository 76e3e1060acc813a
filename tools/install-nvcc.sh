#!/usr/bin/env bash
# Installs a CUDA 13.0 nvcc from NVIDIA's PyPI wheels (nvidia-cuda-nvcc, nvidia-nvvm (cicc, the
# front end nvcc calls; a separate wheel since CUDA 13), nvidia-cuda-runtime, nvidia-cuda-crt,
# nvidia-cuda-cccl) into an ignored folder (.nvcc/ at the repo
# root, or $1), for hosts without a CUDA toolkit (CI, development machines without a GPU).
#
# The minor version is pinned to 13.0: the H100 host's driver is 13.0, and a driver loads neither
# cubins nor PTX from a newer toolkit minor (PTX ISA versions are tied to the toolkit; see the
# CUDA Compatibility guide, "Forward compatibility" section). Raise the pin only together with
# the oldest driver jetwatch must run on.
#
# Prints the nvcc path last; use it as `NVCC=<path> cargo build --features cuda13`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.nvcc}"
py="${PYTHON:-python3}"
CUDA_PIN="${CUDA_PIN:-13.0.*}"

if [ ! -x "$dest/cuda/bin/nvcc" ] || [ ! -x "$dest/cuda/nvvm/bin/cicc" ]; then
    rm -rf "$dest/site" "$dest/cuda"
    mkdir -p "$dest"
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest/site" \
        "nvidia-cuda-nvcc==$CUDA_PIN" \
        "nvidia-cuda-runtime==$CUDA_PIN" \
        "nvidia-cuda-crt==$CUDA_PIN" \
        "nvidia-cuda-cccl==$CUDA_PIN" \
        "nvidia-nvvm==$CUDA_PIN"
    # The wheels unpack under site/nvidia/cu13 (bin/, include/, lib/, nvvm/). Present them as a
    # normal toolkit layout so nvcc finds its include/ and nvvm/ relative to bin/.
    base="$(find "$dest/site/nvidia" -type f -name nvcc -path '*/bin/*' | head -n1)"
    if [ -z "$base" ]; then
        echo "install-nvcc: nvcc not found in the installed wheels under $dest/site" >&2
        exit 1
    fi
    tk="$(dirname "$(dirname "$base")")"
    ln -sfn "$tk" "$dest/cuda"
    chmod +x "$dest/cuda/bin/"* "$dest/cuda/nvvm/bin/"* 2>/dev/null || true
fi
"$dest/cuda/bin/nvcc" --version | tail -n 2 >&2
echo "$dest/cuda/bin/nvcc"
