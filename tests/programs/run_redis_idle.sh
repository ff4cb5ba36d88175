#!/usr/bin/env bash
# usage: run_redis_idle.sh LIBHAKMEM [KEYS]
# A server that frees a lot and goes idle must give the memory back without
# more traffic. redis-server on 127.0.0.1 (a free port), hakmem preloaded:
#   1. KEYS random keys of 300 bytes (redis-benchmark, pipelined), then
#      FLUSHALL (synchronous: redis then asks its allocator to purge, through
#      jemalloc's mallctl, which hakmem answers), 3 s idle: RSS at most a
#      third of the loaded RSS and at most 32 MiB;
#   2. the same load, FLUSHALL ASYNC (freed on redis's lazy-free thread; no
#      purge call), 3 s idle, no client call: at most 45% of the loaded RSS,
#      the purge thread's work (without it the server stays at 100%). It
#      ends at 16-27 MiB of 90: the lazy-free thread, idle now, keeps one
#      batch of each class it freed (refill's shed_if_draining), and each
#      block its slab. (It kept its learned capacity, up to 2048 blocks a
#      class, before: 20-81 MiB.)
# The same session on the server's own allocator (Debian's redis is linked
# to jemalloc) is printed beside it for comparison, not checked.
source "$(dirname "$0")/common.sh"
HAKMEM_LIB=$1; KEYS=${2:-300000}
check_lib "$HAKMEM_LIB"
source "$(dirname "$0")/redis_common.sh"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$REDIS_PID/status"; }

load() {  # load MODE: KEYS random keys; prints the loaded RSS
  timeout 120 redis-benchmark -h 127.0.0.1 -p "$PORT" -q -n "$KEYS" -r "$KEYS" -d 300 -P 32 -t set \
    >"$TMP/bench.out" 2>&1 || { cat "$TMP/bench.out" >&2; fail "$1: redis-benchmark failed"; }
  local keys; keys=$(cli dbsize)
  [ "$keys" -ge $((KEYS / 2)) ] || fail "$1: only $keys keys after the load"
  rss_kib
}

session() {  # session MODE: prints "loaded flushed loaded_again flushed_async" in KiB
  local mode=$1
  start_server "$mode" --lazyfree-lazy-user-flush no >&2
  local a b c d
  a=$(load "$mode")
  cli flushall sync >/dev/null
  sleep 3
  b=$(rss_kib)
  c=$(load "$mode")
  cli flushall async >/dev/null
  sleep 3
  d=$(rss_kib)
  [ "$(cli dbsize)" = 0 ] || fail "$mode: keys left after FLUSHALL ASYNC"
  cli shutdown nosave >/dev/null 2>&1 || true
  wait "$SERVER_PID" || fail "$mode: redis-server exited with an error"
  SERVER_PID=""
  echo "$a $b $c $d"
}

read -r ja jb jc jd < <(session glibc)
log "redis on its own allocator (jemalloc): loaded $ja KiB, FLUSHALL + 3 s: $jb KiB; loaded $jc KiB, FLUSHALL ASYNC + 3 s: $jd KiB"
read -r ha hb hc hd < <(session hakmem)
log "redis on hakmem: loaded $ha KiB, FLUSHALL + 3 s: $hb KiB; loaded $hc KiB, FLUSHALL ASYNC + 3 s: $hd KiB"
[ "$ha" -ge 40000 ] || fail "the load reached only $ha KiB: nothing to give back"
[ "$hb" -le $((ha / 3)) ] && [ "$hb" -le 32768 ] || fail "after FLUSHALL and 3 s idle the server holds $hb KiB (loaded: $ha)"
[ "$hd" -le $((hc * 45 / 100)) ] || fail "after FLUSHALL ASYNC and 3 s idle the server holds $hd KiB (loaded: $hc)"
echo PASS
