#!/bin/busybox sh
# PID 1 of the V4L2 test VM: mount the pseudo file systems, run every test of
# tests/v4l2_vm.rs separately with a timeout, print one RESULT line each, reboot (qemu runs
# with -no-reboot, so it exits).
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev 2>/dev/null
export PATH=/bin HOME=/tmp TMPDIR=/tmp RUST_BACKTRACE=1
per_test=120
for arg in $($bb cat /proc/cmdline); do
  case "$arg" in jetwatch.test_timeout=*) per_test="${arg#*=}";; esac
done
echo "JETWATCH-VM-BEGIN kernel $($bb uname -r)"
for n in $($bb ls /sys/class/video4linux); do
  echo "JETWATCH-VM-NODE /dev/$n $($bb cat /sys/class/video4linux/$n/name)"
done
for t in $(/v4l2_vm --ignored --list 2>/dev/null | $bb sed -n 's/: test$//p'); do
  echo "JETWATCH-VM-START $t"
  s=$($bb date +%s)
  $bb timeout "$per_test" /v4l2_vm --ignored --exact "$t" --nocapture --test-threads=1 2>&1
  rc=$?
  e=$($bb date +%s)
  echo "JETWATCH-VM-RESULT $t rc=$rc secs=$((e - s))"
done
echo "JETWATCH-VM-END"
$bb sync
$bb reboot -f
