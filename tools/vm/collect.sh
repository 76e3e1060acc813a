#!/usr/bin/env bash
# Reads the VM's serial log and prints a pass/fail table; exits non-zero if any test failed,
# if none ran, or if the guest never reached its end marker.
log="$1"
[ -f "$log" ] || { echo "collect: no log $log" >&2; exit 2; }
tr -d '\r' < "$log" > "$log.txt"
printf '%-60s %-6s %s\n' TEST RESULT SECONDS
fail=0; n=0
while read -r _ name rc secs; do
  rc="${rc#rc=}"; secs="${secs#secs=}"
  n=$((n + 1))
  if [ "$rc" = 0 ]; then r=PASS; elif [ "$rc" = 124 ] || [ "$rc" = 143 ]; then r=TIMEOUT; fail=1; else r=FAIL; fail=1; fi
  printf '%-60s %-6s %s\n' "$name" "$r" "$secs"
done < <(grep '^JETWATCH-VM-RESULT ' "$log.txt")
if ! grep -q '^JETWATCH-VM-END' "$log.txt"; then
  echo "collect: the guest did not finish (see $log); last lines:" >&2
  tail -n 30 "$log.txt" >&2
  exit 1
fi
if [ "$n" = 0 ]; then echo "collect: no test ran" >&2; tail -n 30 "$log.txt" >&2; exit 1; fi
if [ "$fail" != 0 ]; then
  echo "collect: failures; output of failing tests:" >&2
  awk '/^JETWATCH-VM-START /{buf=""; name=$2} {buf=buf"\n"$0} /^JETWATCH-VM-RESULT /{ if ($3 != "rc=0") print buf }' "$log.txt" >&2
fi
exit "$fail"
