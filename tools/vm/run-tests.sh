#!/usr/bin/env bash
# The V4L2 test VM, in one command (what .ci/run calls):
#   1. installs the packages it needs (assumes `apt-get update` already ran; skip with
#      VM_NO_APT=1),
#   2. builds (or reuses, cached by config hash) a minimal kernel with vicodec/vim2m/vivid,
#   3. builds tests/v4l2_vm.rs and packs it with its shared libraries and busybox into an
#      initramfs,
#   4. boots it with qemu-system-x86_64 (TCG), runs every V4L2 test inside with a timeout,
#   5. prints a pass/fail table from the serial console and exits non-zero on any failure.
# Environment: VM_CACHE (default $CARGO_TARGET_DIR/vm or target/vm), VM_TIMEOUT (whole boot,
# seconds, default 420), VM_TEST_TIMEOUT (per test inside the guest, default 120), VM_KERNEL
# (a prebuilt bzImage instead of building one).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
t0=$(date +%s)
VM_CACHE="${VM_CACHE:-${CARGO_TARGET_DIR:-$repo/target}/vm}"
VM_TIMEOUT="${VM_TIMEOUT:-420}"
VM_TEST_TIMEOUT="${VM_TEST_TIMEOUT:-120}"
mkdir -p "$VM_CACHE"

if [ "${VM_NO_APT:-0}" != 1 ]; then
  pkgs="linux-source-6.1 flex bison bc libelf-dev libssl-dev cpio qemu-system-x86 busybox-static"
  missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "vm: apt-get install$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2
  fi
fi

# VM_KERNEL: use a prebuilt bzImage (must have the options of tools/vm/kernel.config).
kernel="${VM_KERNEL:-$("$here/build-kernel.sh")}"
build_dir="$VM_CACHE/build"
echo "vm: kernel $kernel ($(( $(date +%s) - t0 )) s)" >&2

# Test binary (dynamic glibc; its libraries go into the initramfs).
test_bin="$(cd "$repo" && cargo test --test v4l2_vm --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "v4l2_vm" and m.get("executable"):
        print(m["executable"])' | tail -n 1)"
[ -x "$test_bin" ] || { echo "vm: could not build tests/v4l2_vm.rs" >&2; (cd "$repo" && cargo test --test v4l2_vm --no-run) ; exit 2; }
echo "vm: test binary $test_bin ($(( $(date +%s) - t0 )) s)" >&2

stage="$VM_CACHE/initramfs"
rm -rf "$stage"
mkdir -p "$stage"/{bin,proc,sys,dev,tmp}
list="$VM_CACHE/initramfs.list"
{
  echo "dir /dev 0755 0 0"
  echo "nod /dev/console 0600 0 0 c 5 1"
  echo "nod /dev/null 0666 0 0 c 1 3"
  for d in /bin /proc /sys /tmp /lib /lib64 /lib/x86_64-linux-gnu /usr /usr/lib /usr/lib/x86_64-linux-gnu; do echo "dir $d 0755 0 0"; done
  echo "file /bin/busybox $(command -v busybox) 0755 0 0"
  echo "file /v4l2_vm $test_bin 0755 0 0"
  echo "file /init $here/init.sh 0755 0 0"
  for lib in $(ldd "$test_bin" | grep -o '/[^ ]*' | sort -u); do
    echo "file $lib $(readlink -f "$lib") 0755 0 0"
  done
} > "$list"
gen="$build_dir/usr/gen_init_cpio"
[ -x "$gen" ] || { echo "vm: $gen missing (kernel build incomplete?)" >&2; exit 2; }
"$gen" "$list" > "$VM_CACHE/initramfs.cpio"
echo "vm: initramfs $(du -h "$VM_CACHE/initramfs.cpio" | cut -f1) ($(( $(date +%s) - t0 )) s)" >&2

log="$VM_CACHE/serial.log"
set +e
timeout "$VM_TIMEOUT" qemu-system-x86_64 -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$VM_CACHE/initramfs.cpio" \
  -append "console=ttyS0 loglevel=4 panic=-1 vicodec.multiplanar=1 jetwatch.test_timeout=$VM_TEST_TIMEOUT" \
  < /dev/null > "$log" 2>&1
qrc=$?
set -e
boot_s=$(( $(date +%s) - t0 ))

set +e
"$here/collect.sh" "$log"
crc=$?
set -e
echo "vm: qemu exit $qrc, total wall time ${boot_s} s, serial log $log" >&2
if [ "$qrc" = 124 ]; then echo "vm: FAILED: the VM did not finish within ${VM_TIMEOUT} s" >&2; exit 1; fi
exit "$crc"
