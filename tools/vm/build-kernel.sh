#!/usr/bin/env bash
# Builds the test-VM kernel from Debian's linux-source-6.1 package: `make tinyconfig`, then
# the fragment tools/vm/kernel.config merged over it. The result is cached under
# $VM_CACHE/bzImage-<hash>, keyed by the fragment and the source package version, so a re-run
# with nothing changed costs nothing; the object tree ($VM_CACHE/build) is kept, so a changed
# fragment rebuilds only what depends on the changed options. Prints the bzImage path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
VM_CACHE="${VM_CACHE:-${CARGO_TARGET_DIR:-$repo/target}/vm}"
tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || { echo "build-kernel: $tarball missing (apt-get install linux-source-6.1)" >&2; exit 2; }
pkgver="$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)"
hash="$( (grep -v '^#' "$here/kernel.config"; echo "$pkgver") | sha256sum | cut -c1-16)"
out="$VM_CACHE/bzImage-$hash"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$VM_CACHE"
# One build at a time per cache: .ci/run starts a build in the background early, and the VM
# step later waits here for it instead of starting a second one.
exec 9>"$VM_CACHE/.build.lock"
flock 9
if [ -f "$out" ]; then echo "$out"; exit 0; fi
src="$VM_CACHE/linux-source-6.1"
stamp="$VM_CACHE/.src-$pkgver"
if [ ! -f "$stamp" ]; then
  echo "build-kernel: extracting $tarball ($pkgver)" >&2
  rm -rf "$src" "$VM_CACHE/build"
  nice tar xJf "$tarball" -C "$VM_CACHE"
  touch "$stamp"
fi
build="$VM_CACHE/build"
mkdir -p "$build"
jobs="${VM_JOBS:-$(nproc)}"
echo "build-kernel: configuring in $build" >&2
make -s -C "$src" O="$build" tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$here/kernel.config" >&2
make -s -C "$src" O="$build" olddefconfig >&2
# Every option the fragment asks for must have survived dependency resolution.
missing=0
while read -r line; do
  case "$line" in CONFIG_*=y) grep -qx "$line" "$build/.config" || { echo "build-kernel: $line not set after olddefconfig" >&2; missing=1; } ;; esac
done < "$here/kernel.config"
[ "$missing" = 0 ] || exit 3
echo "build-kernel: building bzImage with -j$jobs" >&2
nice make -s -C "$src" O="$build" -j"$jobs" bzImage >&2
cp "$build/arch/x86/boot/bzImage" "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
