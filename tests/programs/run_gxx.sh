#!/usr/bin/env bash
# usage: run_gxx.sh LIBHAKMEM CXX SOURCE
# Compiles SOURCE with CXX -O2 under glibc and with hakmem preloaded (so the
# driver, cc1plus, as and ld all run on hakmem). Both compiles must succeed
# and emit identical assembly; the linked programs (run under the same
# allocator as their compiler) must exit 0 with identical output.
source "$(dirname "$0")/common.sh"
HAKMEM_LIB=$1 CXX=$2 SRC=$3
check_lib "$HAKMEM_LIB"
need "$CXX"
make_tmp
for mode in glibc hakmem; do
  d=$TMP/$mode; mkdir -p "$d"
  stats=(); [ "$mode" = hakmem ] && stats=(env HAKMEM_STATS=1)
  run_mode "$mode" 120 "$d/cc.out" "$d/cc.err" \
    "${stats[@]}" "$CXX" -std=c++17 -O2 -Wall -Wextra -S -o "$d/prog.s" "$SRC"
  [ "$RC" -eq 0 ] || { cat "$d/cc.err" >&2; fail "$mode: compiling $SRC failed (rc=$RC)"; }
  run_mode "$mode" 60 "$d/ld.out" "$d/ld.err" "$CXX" -o "$d/prog" "$d/prog.s"
  [ "$RC" -eq 0 ] || { cat "$d/ld.err" >&2; fail "$mode: assembling/linking failed (rc=$RC)"; }
  run_mode "$mode" 60 "$d/run.out" "$d/run.err" "$d/prog"
  [ "$RC" -eq 0 ] || { cat "$d/run.err" >&2; fail "$mode: compiled program exits $RC"; }
done
# The driver and cc1plus each print a report at exit: both ran on hakmem.
check_reports "$TMP/hakmem/cc.err" 2
strip_reports "$TMP/hakmem/cc.err" >"$TMP/hakmem/cc.diag"
same_file "$TMP/glibc/cc.err" "$TMP/hakmem/cc.diag" "compiler diagnostics"
same_file "$TMP/glibc/prog.s" "$TMP/hakmem/prog.s" "generated assembly"
same_file "$TMP/glibc/run.out" "$TMP/hakmem/run.out" "compiled program's output"
echo "assembly: $(wc -l <"$TMP/hakmem/prog.s") lines, identical; program output:"
cat "$TMP/hakmem/run.out"
echo PASS
