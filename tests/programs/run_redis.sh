#!/usr/bin/env bash
# usage: run_redis.sh LIBHAKMEM [REQUESTS]
# Starts redis-server on 127.0.0.1 (a free port) on its usual allocator (the
# "glibc" run: Debian's redis-server is linked to libjemalloc, whose malloc it
# calls) and then with hakmem preloaded (hakmem's malloc then wins), drives it with redis-benchmark (8 parallel clients, the
# client itself on glibc), and checks: every benchmark test reports, the server
# saw no error replies, still answers PING, holds a sane number of keys, frees
# a flushed database on its lazy-free thread, and exits 0 on SHUTDOWN NOSAVE.
# The deterministic part of the session must be identical under both.
source "$(dirname "$0")/common.sh"
HAKMEM_LIB=$1; N=${2:-50000}
check_lib "$HAKMEM_LIB"
source "$(dirname "$0")/redis_common.sh"

session() {  # session MODE: writes MODE.out (compared) and checks as it goes
  local mode=$1 out="$TMP/$1.out"
  start_server "$mode" --lazyfree-lazy-user-flush yes
  local rpid; rpid=$(info_field server process_id)
  if [ "$mode" = hakmem ]; then
    maps_has_hakmem "$rpid" || fail "redis-server (pid $rpid) does not have libhakmem.so mapped"
  fi
  local t0; t0=$(date +%s.%N)

  # 1. the standard tests, one key each (no -r): the end state is deterministic.
  bench -c 8 -n "$N" -t set,get,lpush,lpop,incr,hset --csv >"$TMP/$mode.csv1" 2>"$TMP/$mode.bench1.err" \
    || { cat "$TMP/$mode.bench1.err" >&2; fail "$mode: redis-benchmark failed"; }
  local t
  for t in SET GET LPUSH LPOP INCR HSET; do
    grep -Eq "^\"$t\",\"[0-9]+(\.[0-9]+)?\"" "$TMP/$mode.csv1" || { cat "$TMP/$mode.csv1" >&2; fail "$mode: benchmark test $t did not report"; }
  done
  ! grep -qi 'error' "$TMP/$mode.csv1" "$TMP/$mode.bench1.err" || { cat "$TMP/$mode.bench1.err" >&2; fail "$mode: errors in benchmark"; }
  {
    echo "tests: $(cut -d, -f1 "$TMP/$mode.csv1" | tail -n +2 | tr -d '"' | sort | tr '\n' ' ')"
    echo "ping: $(cli ping)"
    echo "dbsize after pass 1: $(cli dbsize)"
    echo "keys: $(cli keys '*' | sort | tr '\n' ' ')"
    echo "counter: $(cli get 'counter:__rand_int__')"
    echo "hash: $(cli hlen myhash) $(cli hget myhash element:__rand_int__)"
    echo "value: $(cli strlen 'key:__rand_int__')"
    echo "list: $(cli llen mylist)"
  } >>"$out"

  # 2. random keys, bigger values, pipelining: a heap of many live objects.
  bench -c 8 -n "$N" -r 100000 -d 300 -P 16 -t set,lpush,hset,sadd,zadd --csv >"$TMP/$mode.csv2" 2>"$TMP/$mode.bench2.err" \
    || { cat "$TMP/$mode.bench2.err" >&2; fail "$mode: redis-benchmark (random keys) failed"; }
  # 3. large values (hakmem's large and huge ranges).
  bench -c 4 -n 400 -r 50 -d 300000 -t set,get --csv >"$TMP/$mode.csv3" 2>"$TMP/$mode.bench3.err" \
    || { cat "$TMP/$mode.bench3.err" >&2; fail "$mode: redis-benchmark (large values) failed"; }
  for f in "$TMP/$mode.csv2" "$TMP/$mode.csv3"; do
    [ "$(tail -n +2 "$f" | grep -c '^"')" -ge 2 ] || { cat "$f" >&2; fail "$mode: benchmark pass did not report"; }
  done
  local keys; keys=$(cli dbsize)
  [ "$keys" -ge 1000 ] && [ "$keys" -le 250000 ] || fail "$mode: DBSIZE $keys after random-key pass is not sane"
  local used; used=$(info_field memory used_memory)
  echo "$mode: $keys keys, used_memory $used bytes" >&2
  local errs; errs=$(info_field stats total_error_replies)
  [ "$errs" = 0 ] || fail "$mode: server sent $errs error replies"
  echo "errors: $errs; rejected: $(info_field stats rejected_connections)" >>"$out"

  # 4. free everything on the lazy-free thread (frees on another thread).
  cli flushall async >/dev/null
  local i
  for i in $(seq 1 100); do
    [ "$(cli dbsize)" = 0 ] && [ "$(info_field memory lazyfree_pending_objects)" = 0 ] && break
    sleep 0.1
  done
  {
    echo "after flushall: dbsize $(cli dbsize), pending $(info_field memory lazyfree_pending_objects)"
    echo "set/get: $(cli set after flush) $(cli get after)"
    echo "ping: $(cli ping)"
  } >>"$out"

  # 5. shutdown: the server must exit 0.
  cli shutdown nosave >/dev/null 2>&1 || true
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  echo "server exit status: $rc" >>"$out"
  log "$mode: session took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s; rps: $(tail -n +2 "$TMP/$mode.csv1" | cut -d, -f1,2 | tr -d '"' | tr '\n' ' ')"
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$TMP/$mode.log" "$TMP/$mode.stdout" >&2 || true
    fail "$mode: redis-server exited with status $rc"
  fi
}

session glibc
session hakmem
# The server's report at exit shows that its allocations went to hakmem.
check_reports "$TMP/hakmem.stdout" 1
allocs=$(awk '/^small\/mid: / {print $2}' "$TMP/hakmem.stdout" | head -n 1)
[ "${allocs:-0}" -ge 100000 ] || fail "redis-server made only ${allocs:-0} small allocations on hakmem"
same_file "$TMP/glibc.out" "$TMP/hakmem.out" "redis session"
echo "redis session (identical under both):"; cat "$TMP/hakmem.out"
echo PASS
