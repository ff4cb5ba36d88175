# Sourced by bench/hardened-settings and bench/ace-arms (one library under
# several settings) and bench/scaling (each allocator at each thread count):
# every workload given runs under each configuration, interleaved as
# bench/run does: each repeat runs every configuration of a
# workload in turn, the first one rotating from repeat to repeat.
#
#   settings_run RAW REPEATS DURATION "WORKLOADS" NAME ENV [NAME ENV ...]
#
# ENV is what `env` takes before the program (LD_PRELOAD=... HAKMEM_X=0).
# A workload may carry arguments after commas (larson,--threads=8: how
# bench/scaling varies the thread count). Appends one line per run to RAW:
# workload configuration ops/s peak-KiB.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

settings_run() {
  local raw=$1 repeats=$2 duration=$3 workloads=$4
  shift 4
  local names=() envs=()
  while [ $# -gt 0 ]; do
    names+=("$1")
    envs+=("$2")
    shift 2
  done
  local n=${#names[@]} r w k i line ops kib args
  for ((r = 0; r < repeats; ++r)); do
    for w in $workloads; do
      IFS=, read -ra args <<<"$w"
      for ((k = 0; k < n; ++k)); do
        i=$(((k + r) % n))
        # shellcheck disable=SC2086
        line=$(env ${envs[$i]} /usr/bin/time -f "peak_kib=%M" "$BUILD/bench/${args[0]}" --duration="$duration" \
          "${args[@]:1}" 2>&1) || {
          echo "settings: $w under ${names[$i]} failed: $line" >&2
          return 1
        }
        ops=$(grep -o 'ops_per_sec=[0-9.e+]*' <<<"$line" | cut -d= -f2)
        kib=$(grep -o 'peak_kib=[0-9]*' <<<"$line" | cut -d= -f2)
        echo "$w ${names[$i]} $ops $kib" >>"$raw"
      done
    done
  done
}
