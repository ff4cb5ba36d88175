#!/usr/bin/env python3
"""Checks a bench/gate run against bench/thresholds.

    gate.py THRESHOLDS SUMMARY_CSV HOTPATH_CSV

SUMMARY_CSV is bench/run's summary.csv (medians per workload and allocator),
HOTPATH_CSV bench/callgrind's output (the hardened library's rows, where
present, judge its throughput against release's: `hardened` lines). Prints
one line per threshold, what it
measured and by how much it missed, then "gate: N passed, M failed"; exits 1
when anything failed or could not be measured.
"""
import csv
import sys

PEERS = ("glibc", "mimalloc", "jemalloc", "tcmalloc")


def load_thresholds(path):
    rules = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            if len(line) != 3 or line[0] not in ("throughput", "rss", "instructions", "hardened"):
                sys.exit(f"gate: {path}:{n}: expected 'throughput|rss|instructions|hardened NAME LIMIT'")
            rules.append((line[0], line[1], float(line[2])))
    return rules


def throughput_at_least(runs, workload, allocator, against, against_name, limit):
    """(ok, text): whether `allocator`'s median ops/s on `workload` is at
    least `limit` times `against`'s, in the same run."""
    a, b = runs.get((workload, allocator)), runs.get((workload, against))
    if a is None or b is None or float(b["median_ops_per_sec"]) == 0:
        return False, "not measured"
    got = float(a["median_ops_per_sec"]) / float(b["median_ops_per_sec"])
    text = f"{got:.2f}x {against_name}, limit {limit:g}x"
    if got < limit:
        text += f": short by {100 * (1 - got / limit):.0f}%"
    return got >= limit, text


def main():
    thresholds, summary_csv, hotpath_csv = sys.argv[1:4]
    runs = {}
    with open(summary_csv) as f:
        for row in csv.DictReader(f):
            runs[(row["workload"], row["allocator"])] = row
    ir = {}
    with open(hotpath_csv) as f:
        for row in csv.DictReader(f):
            if row["allocator"] == "hakmem":
                ir[row["size"]] = float(row["ir_per_pair"])

    passed = failed = 0
    for kind, name, limit in load_thresholds(thresholds):
        if kind == "instructions":
            got = ir.get(name)
            what = f"{name} B hot path"
            if got is None:
                ok, text = False, "not measured"
            else:
                ok = got <= limit
                text = f"{got:.2f} instructions per pair, limit {limit:g}"
                if not ok:
                    text += f": {got - limit:.2f} over"
        elif kind == "throughput":
            what = f"{name} throughput"
            ok, text = throughput_at_least(runs, name, "hakmem", "glibc", "glibc", limit)
        elif kind == "hardened":
            what = f"{name} hardened throughput"
            ok, text = throughput_at_least(runs, name, "hakmem-hardened", "hakmem", "release", limit)
        else:
            what = f"{name} peak RSS"
            h = runs.get((name, "hakmem"))
            peers = [(float(runs[(name, p)]["median_peak_rss_kb"]), p) for p in PEERS if (name, p) in runs]
            if h is None or not peers:
                ok, text = False, "not measured"
            else:
                lean_kb, lean = min(peers)
                got = float(h["median_peak_rss_kb"]) / lean_kb
                ok = got <= limit
                text = (f"{got:.2f}x {lean}'s ({float(h['median_peak_rss_kb']) / 1024:.1f} vs "
                        f"{lean_kb / 1024:.1f} MiB), limit {limit:g}x")
                if not ok:
                    text += f": over by {100 * (got / limit - 1):.0f}%"
        print(f"gate: {'ok  ' if ok else 'FAIL'} {what}: {text}")
        passed += ok
        failed += not ok
    print(f"gate: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
