# Sourced by the redis tests (after common.sh): one redis-server at a time on
# 127.0.0.1, a free port, killed at exit.
need redis-server redis-benchmark redis-cli
make_tmp
SERVER_PID=""  # the timeout wrapping the server
REDIS_PID=""   # the server itself
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    sleep 1
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

port_in_use() {  # port_in_use PORT: something listens on 127.0.0.1:PORT
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

cli() { timeout 30 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
bench() { timeout 120 redis-benchmark -h 127.0.0.1 -p "$PORT" "$@"; }
info_field() {  # info_field SECTION FIELD
  cli info "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'
}

# start_server MODE [REDIS-ARGS...]: starts redis-server on a free port under
# MODE's allocator (allocator_env; the hakmem run with HAKMEM_STATS=1), its
# log in $TMP/MODE.log and output in $TMP/MODE.stdout; sets PORT, SERVER_PID
# and REDIS_PID.
start_server() {
  local mode=$1 try
  shift
  for try in 1 2 3 4 5 6 7 8; do
    PORT=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_in_use "$PORT" && continue
    : >"$TMP/$mode.log"
    local stats=(); [ "$mode" = hakmem ] && stats=(HAKMEM_STATS=1)
    timeout -k 5 300 env "$(allocator_env "$mode")" "${stats[@]}" redis-server \
      --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$TMP" --logfile "$TMP/$mode.log" "$@" \
      >"$TMP/$mode.stdout" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
      if [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; then
        REDIS_PID=$(info_field server process_id)
        log "$mode: redis-server up on 127.0.0.1:$PORT"
        return 0
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    # It died (port taken in a race?) or never answered: show why and retry.
    tail -n 5 "$TMP/$mode.log" >&2 || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  done
  fail "$mode: could not start redis-server"
}
