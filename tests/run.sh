#!/usr/bin/env bash
# Runs every test binary given on the command line and prints the total as
# "N passed, N failed". Exit status is non-zero if any check failed or any
# binary crashed.
set -u
pass=0; fail=0; crashed=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ] || { [ $rc -ne 0 ] && ! printf '%s' "$line" | grep -qE ' [1-9][0-9]* failed'; }; then
        printf '%s\n' "$out" | tail -n 30
        echo "CRASH $t (exit $rc)"; crashed=$((crashed + 1)); fail=$((fail + 1)); continue
    fi
    p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$f" -ne 0 ]; then printf '%s\n' "$out" | grep -E '^FAIL' | head -n 20; fi
    echo "$line"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $crashed -eq 0 ]
