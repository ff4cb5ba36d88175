#!/usr/bin/env bash
# usage: run_launcher.sh HAKMEM_LAUNCHER LIBHAKMEM
# The launcher: `hakmem --help` exits 0 and documents `run`; `hakmem run
# --stats -- true` exits 0 and prints the statistics report on stderr;
# `hakmem run -- PROG` passes PROG's exit status and output through; `hakmem
# lib` names the library; a bad command exits non-zero; --version says it;
# a missing program exits 127; --hardened preloads the hardened library.
source "$(dirname "$0")/common.sh"
LAUNCHER=$1 LIB=$2
[ -x "$LAUNCHER" ] || fail "launcher '$LAUNCHER' is not executable"
check_lib "$LIB"
make_tmp

timeout 30 "$LAUNCHER" --help >"$TMP/help.out" 2>"$TMP/help.err" || fail "hakmem --help exits $?"
grep -qw run "$TMP/help.out" || { cat "$TMP/help.out"; fail "hakmem --help does not mention 'run'"; }
echo "ok: --help exits 0 and mentions run"

timeout 30 "$LAUNCHER" run --stats -- true >"$TMP/stats.out" 2>"$TMP/stats.err" || fail "hakmem run --stats -- true exits $?"
grep -q "hakmem statistics" "$TMP/stats.err" || { cat "$TMP/stats.err"; fail "no 'hakmem statistics' report on stderr"; }
[ ! -s "$TMP/stats.out" ] || fail "hakmem run --stats -- true wrote to stdout"
echo "ok: run --stats -- true prints the report:"; cat "$TMP/stats.err"

set +e
timeout 30 "$LAUNCHER" run -- sh -c 'echo "out $0"; echo err >&2; exit 7' arg0 >"$TMP/pass.out" 2>"$TMP/pass.err"
rc=$?
set -e
[ "$rc" -eq 7 ] || fail "hakmem run -- sh ... exit 7: got $rc"
[ "$(cat "$TMP/pass.out")" = "out arg0" ] || fail "stdout not passed through: $(cat "$TMP/pass.out")"
[ "$(cat "$TMP/pass.err")" = "err" ] || fail "stderr not passed through: $(cat "$TMP/pass.err")"
timeout 30 "$LAUNCHER" run -- sh -c 'grep -q libhakmem /proc/self/maps' || fail "hakmem run does not preload libhakmem.so"
echo "ok: run passes exit status and output through, and preloads the library"

[ -f "$(timeout 30 "$LAUNCHER" lib)" ] || fail "hakmem lib does not name an existing file"
if timeout 30 "$LAUNCHER" no-such-command >/dev/null 2>&1; then fail "an unknown command exits 0"; fi
if timeout 30 "$LAUNCHER" >/dev/null 2>&1; then fail "no arguments exits 0"; fi
echo "ok: lib, unknown command, no arguments"

version=$(timeout 30 "$LAUNCHER" --version) || fail "hakmem --version exits $?"
[[ "$version" =~ ^hakmem\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "hakmem --version says '$version'"
set +e
timeout 30 "$LAUNCHER" run -- no-such-program-hakmem >/dev/null 2>"$TMP/missing.err"
rc=$?
set -e
[ "$rc" -eq 127 ] || fail "a missing program exits $rc, not 127"
[ "$(cat "$TMP/missing.err")" = "hakmem: no-such-program-hakmem: command not found" ] ||
  fail "a missing program says: $(cat "$TMP/missing.err")"
echo "ok: --version ($version); a missing program: 127 and one line"

timeout 60 "$LAUNCHER" run --stats-top -- python3 -c 'import subprocess; subprocess.run(["ls", "/"], stdout=subprocess.DEVNULL)' \
  2>"$TMP/top.err" || fail "hakmem run --stats-top -- python3 ... exits $?"
[ "$(grep -c '^hakmem statistics' "$TMP/top.err")" = 1 ] && grep -q '^hakmem statistics (pid [0-9]*, python3' "$TMP/top.err" ||
  { cat "$TMP/top.err"; fail "--stats-top: not exactly one report, python3's"; }
echo "ok: --stats-top reports the program's own process only"

hardened=$(timeout 30 "$LAUNCHER" lib --hardened)
[[ "$hardened" == */libhakmem-hardened.so ]] || fail "hakmem lib --hardened names $hardened"
if [ -f "$hardened" ]; then
  timeout 30 "$LAUNCHER" run --hardened -- sh -c 'grep -q libhakmem-hardened /proc/self/maps' ||
    fail "hakmem run --hardened does not preload $hardened"
  echo "ok: --hardened preloads $hardened"
else
  echo "ok: --hardened would preload $hardened (not built here: make hardened)"
fi
echo PASS
