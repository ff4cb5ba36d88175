#!/usr/bin/env bash
# usage: run_compare.sh [--stdin FILE] LIBHAKMEM SECONDS CMD [ARGS...]
# Runs CMD under glibc and under hakmem (with HAKMEM_STATS=1, so the report on
# stderr proves the preload took), each in a fresh empty working directory and
# with FILE on stdin if given. Both must exit 0 with identical stdout; neither
# may crash or time out, and hakmem must see no invalid frees.
source "$(dirname "$0")/common.sh"
stdin=/dev/null
if [ "${1:-}" = --stdin ]; then stdin=$2; shift 2; fi
HAKMEM_LIB=$1; secs=$2; shift 2
check_lib "$HAKMEM_LIB"
need "$1"
make_tmp
for mode in glibc hakmem; do
  mkdir -p "$TMP/$mode.cwd"
  stats=(); [ "$mode" = hakmem ] && stats=(env HAKMEM_STATS=1)
  (cd "$TMP/$mode.cwd" && run_mode "$mode" "$secs" "$TMP/$mode.out" "$TMP/$mode.err" "${stats[@]}" "$@" <"$stdin"
   echo "$RC" >"$TMP/$mode.rc")
done
rc_glibc=$(cat "$TMP/glibc.rc"); rc_hakmem=$(cat "$TMP/hakmem.rc")
[ "$rc_glibc" -eq 0 ] || { cat "$TMP/glibc.err" >&2; fail "program fails under glibc (rc=$rc_glibc)"; }
[ "$rc_hakmem" -eq "$rc_glibc" ] || { tail -n 30 "$TMP/hakmem.err" >&2; fail "exit status: glibc $rc_glibc, hakmem $rc_hakmem"; }
same_file "$TMP/glibc.out" "$TMP/hakmem.out" "stdout"
check_reports "$TMP/hakmem.err" 1
echo "output (identical under both, first lines):"; head -n 12 "$TMP/hakmem.out"
echo "hakmem report:"; grep -E '^(large|memory|process|bad)' "$TMP/hakmem.err" || true
echo PASS
