# Sourced by bench/run and bench/callgrind: where things are, which
# allocators exist, and how to get the programs built.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${HAKMEM_BUILD_DIR:-$ROOT/build/release}
JOBS=${JOBS:-2}
ALL_ALLOCATORS=(hakmem glibc mimalloc jemalloc tcmalloc)
HARDENED_LIB=$ROOT/build/hardened/lib/libhakmem-hardened.so
LIBDIR=/usr/lib/x86_64-linux-gnu

# The library to preload for an allocator ("" for glibc).
alloc_lib() {
  case "$1" in
    hakmem) echo "${HAKMEM_LIB:-$BUILD/lib/libhakmem.so}" ;;
    hakmem-hardened) echo "${HAKMEM_HARDENED_LIB:-$HARDENED_LIB}" ;;  # make hardened
    glibc) echo "" ;;
    mimalloc) echo "$LIBDIR/libmimalloc.so.2" ;;
    jemalloc) echo "$LIBDIR/libjemalloc.so.2" ;;
    tcmalloc) echo "$LIBDIR/libtcmalloc_minimal.so.4" ;;
    *) return 1 ;;
  esac
}

# The allocators measured when none are named: the five, and the hardened
# variant beside the release library once it has been built (it is ours, not
# a peer; the report compares it with release only).
default_allocators() {
  local a
  for a in "${ALL_ALLOCATORS[@]}"; do
    echo "$a"
    if [ "$a" = hakmem ] && [ -f "$(alloc_lib hakmem-hardened)" ]; then echo hakmem-hardened; fi
  done | paste -sd' ' -
}

alloc_package() {
  case "$1" in
    mimalloc) echo libmimalloc2.0 ;;
    jemalloc) echo libjemalloc2 ;;
    tcmalloc) echo libtcmalloc-minimal4 ;;
  esac
}

# Sets the array ENV_ARGS to the `env ...` prefix that runs a program under
# an allocator: alloc_env NAME; "${ENV_ARGS[@]}" prog args.
alloc_env() {
  local lib
  lib=$(alloc_lib "$1") || return 1
  if [ -n "$lib" ]; then ENV_ARGS=(env LD_PRELOAD="$lib"); else ENV_ARGS=(env -u LD_PRELOAD); fi
}

# Runs a program under an allocator: with_alloc NAME CMD ARGS...
with_alloc() {
  alloc_env "$1" || return 1
  shift
  "${ENV_ARGS[@]}" "$@"
}

# Installs the Debian packages of the peers that are missing.
ensure_peers() {
  local missing=() a
  for a in "$@"; do
    case "$a" in hakmem | glibc) continue ;; esac
    if [ "$a" = hakmem-hardened ]; then
      [ -f "$(alloc_lib "$a")" ] || { echo "bench: build the hardened variant first: make hardened" >&2; return 1; }
      continue
    fi
    [ -f "$(alloc_lib "$a")" ] || missing+=("$(alloc_package "$a")")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "bench: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2 || {
    echo "bench: could not install ${missing[*]}" >&2
    return 1
  }
}

# Makes sure the bench programs (and libhakmem.so) are built and current.
ensure_built() {
  if [ ! -f "$BUILD/CMakeCache.txt" ] || [ ! -d "$BUILD/bench/CMakeFiles" ]; then
    # Not configured, or configured before bench/ existed.
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DHAKMEM_BENCH=ON >/dev/null || return 1
  fi
  cmake --build "$BUILD" -j "$JOBS" --target bench_programs >/dev/null || {
    echo "bench: building the bench programs in $BUILD failed" >&2
    return 1
  }
  if [ -z "${HAKMEM_LIB:-}" ] && [ ! -f "$BUILD/lib/libhakmem.so" ]; then
    cmake --build "$BUILD" -j "$JOBS" --target hakmem >/dev/null || return 1
  fi
}

# Checks that a preloaded allocator really serves malloc: the hotpath
# program names the library its malloc comes from.
check_alloc() {
  local a=$1 lib out
  lib=$(alloc_lib "$a")
  out=$(with_alloc "$a" "$BUILD/bench/hotpath" --size=16 --iters=1000 --warmup=0 2>&1) || {
    echo "bench: $a: hotpath failed: $out" >&2
    return 1
  }
  local from=${out#*malloc_from=}
  from=${from%% *}
  if [ -n "$lib" ]; then
    [ "$(readlink -f "$from")" = "$(readlink -f "$lib")" ] || {
      echo "bench: $a: malloc comes from $from, not $lib" >&2
      return 1
    }
  else
    case "$from" in */libc.so.6) ;; *)
      echo "bench: glibc: malloc comes from $from" >&2
      return 1
      ;;
    esac
  fi
}

split_list() { tr ',' ' ' <<<"$1"; }
