# Shared helpers for the real-program tests (sourced by the run_*.sh scripts).
# Each test runs a program once under glibc (LD_PRELOAD empty) and once with
# libhakmem.so preloaded, and compares what must be identical.
set -euo pipefail

SKIP=77   # ctest SKIP_RETURN_CODE: a needed tool is missing

log()  { echo "[$(date +%T)] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

need() {  # need TOOL...: skip the test when a tool is missing
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { echo "SKIP: '$t' not found"; exit "$SKIP"; }
  done
}

check_lib() {  # check_lib PATH: the library under test exists
  [ -f "$1" ] || fail "libhakmem.so not found at '$1'"
}

make_tmp() {  # sets TMP to a fresh directory removed at exit
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-prog.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
}

# allocator_env MODE: prints the env assignment that selects the allocator.
allocator_env() {
  case "$1" in
    glibc)  echo "LD_PRELOAD=" ;;
    hakmem) echo "LD_PRELOAD=$HAKMEM_LIB" ;;
    *) fail "unknown mode $1" ;;
  esac
}

# run_mode MODE SECONDS OUT ERR CMD...: runs CMD with the allocator of MODE
# under timeout, stdout to OUT and stderr to ERR; sets RC. Never fails itself.
run_mode() {
  local mode=$1 secs=$2 out=$3 err=$4; shift 4
  local t0 t1
  t0=$(date +%s.%N)
  set +e
  timeout -k 5 "$secs" env "$(allocator_env "$mode")" "$@" >"$out" 2>"$err"
  RC=$?
  set -e
  t1=$(date +%s.%N)
  log "$mode: rc=$RC in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')s: $*"
  if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
    tail -n 20 "$err" >&2 || true
    fail "$mode run timed out after ${secs}s"
  fi
  if [ "$RC" -ge 128 ]; then
    tail -n 20 "$err" >&2 || true
    fail "$mode run died of signal $((RC - 128))"
  fi
  return 0
}

# same_file A B WHAT: A and B must be identical; shows a diff otherwise.
same_file() {
  if ! cmp -s "$1" "$2"; then
    echo "--- glibc vs hakmem: $3 differs:" >&2
    diff "$1" "$2" | head -n 40 >&2 || true
    fail "$3 differs between glibc and hakmem"
  fi
}

# maps_has_hakmem PID: the process has libhakmem.so mapped (the preload took).
maps_has_hakmem() {
  grep -q 'libhakmem' "/proc/$1/maps" 2>/dev/null
}

# Statistics reports (HAKMEM_STATS=1) that preloaded processes write to stderr.
strip_reports() {  # strip_reports FILE: FILE without hakmem's reports
  awk '/^hakmem statistics( \(|$)/ {skip = 1} !skip {print} /^bad frees: / {skip = 0}' "$1"
}
count_reports() {  # count_reports FILE: how many processes reported
  grep -cE '^hakmem statistics( \(|$)' "$1" || true
}
check_reports() {  # check_reports FILE MIN: at least MIN reports, none with invalid frees
  local n; n=$(count_reports "$1")
  [ "$n" -ge "$2" ] || fail "expected at least $2 hakmem statistics report(s), saw $n: was libhakmem.so preloaded?"
  if grep '^bad frees: ' "$1" | grep -qv ' 0 invalid$'; then
    grep '^bad frees: ' "$1" >&2
    fail "hakmem saw invalid frees"
  fi
  if grep '^bad frees: ' "$1" | grep -qv ': 0 foreign'; then
    echo "note: hakmem reported foreign frees: $(grep '^bad frees: ' "$1" | grep -v ': 0 foreign' | sort | uniq -c | tr '\n' ';')"
  fi
  echo "hakmem reports: $n process(es); $(grep -E '^small/mid: ' "$1" | head -n 1)"
}
