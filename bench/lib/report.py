#!/usr/bin/env python3
"""Summarises a bench/run results folder.

Reads raw.csv (one row per run), hotpath.csv (bench/callgrind), micro-*.json
(Google Benchmark) and meta.txt; prints the tables; writes summary.csv,
micro.csv, REPORT.md and the gnuplot data and scripts (*.dat, *.gp) that
bench/run renders to PNG.

Figures: the median over repeats of each workload's ops/sec and peak RSS;
ratios to glibc (higher is better for throughput, lower for RSS); hakmem
against the best peer (the fastest, or the leanest, of the others); and
geometric means of the ratios over the workloads.
"""
import argparse
import csv
import glob
import json
import math
import os
import statistics

PEER_ORDER = ["hakmem", "glibc", "mimalloc", "jemalloc", "tcmalloc"]


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def human(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def mib(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


def fmt_ratio(r):
    return "-" if r is None or math.isnan(r) else f"{r:.2f}"


def read_meta(out):
    meta = {}
    path = os.path.join(out, "meta.txt")
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return meta


def load_runs(out):
    runs = {}
    fails = []
    path = os.path.join(out, "raw.csv")
    if not os.path.exists(path):
        return runs, fails, []
    order = []
    for row in csv.DictReader(open(path)):
        w, a = row["workload"], row["allocator"]
        if w not in order:
            order.append(w)
        if row["status"] != "ok":
            fails.append((w, a, row["repeat"]))
            continue
        runs.setdefault((w, a), []).append((float(row["ops_per_sec"]), float(row["peak_rss_kb"]),
                                            float(row.get("cpu_s") or 0), float(row.get("wall_s") or 0)))
    return runs, fails, order


def summarise(runs, workloads, allocs):
    """Per workload: medians, spreads and ratios."""
    rows = []
    for w in workloads:
        med, rss, spread, cpu = {}, {}, {}, {}
        for a in allocs:
            rs = runs.get((w, a))
            if not rs:
                continue
            ops = [r[0] for r in rs]
            med[a] = statistics.median(ops)
            rss[a] = statistics.median([r[1] for r in rs])
            cpu[a] = statistics.median([r[2] for r in rs])
            spread[a] = (max(ops) - min(ops)) / med[a] if med[a] > 0 else float("nan")
        g = med.get("glibc")
        grss = rss.get("glibc")
        ratio = {a: (med[a] / g if g else float("nan")) for a in med}
        rss_ratio = {a: (rss[a] / grss if grss else float("nan")) for a in rss}
        peers = [a for a in med if a != "hakmem"]
        best = max(peers, key=lambda a: med[a]) if peers else None
        lean = min(peers, key=lambda a: rss[a]) if peers else None
        vs_best = med["hakmem"] / med[best] if best and "hakmem" in med and med[best] > 0 else float("nan")
        rss_vs_lean = rss["hakmem"] / rss[lean] if lean and "hakmem" in rss and rss[lean] > 0 else float("nan")
        rows.append(dict(workload=w, med=med, rss=rss, spread=spread, cpu=cpu, ratio=ratio, rss_ratio=rss_ratio,
                         best=best, vs_best=vs_best, lean=lean, rss_vs_lean=rss_vs_lean))
    return rows


def load_hotpath(out):
    path = os.path.join(out, "hotpath.csv")
    if not os.path.exists(path):
        return {}, [], None
    res, sizes, iters = {}, [], None
    for row in csv.DictReader(open(path)):
        s = int(row["size"])
        if s not in sizes:
            sizes.append(s)
        res[(row["allocator"], s)] = float(row["ir_per_pair"])
        iters = row["iters"]
    return res, sizes, iters


def load_micro(out, allocs):
    """{benchmark name: {allocator: ns per item}} from the JSON files."""
    res, names = {}, []
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    for a in allocs:
        path = os.path.join(out, f"micro-{a}.json")
        if not os.path.exists(path):
            continue
        try:
            data = json.load(open(path))
        except ValueError:
            continue
        for b in data.get("benchmarks", []):
            if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
                continue
            name = b["name"]
            if name not in names:
                names.append(name)
            ips = b.get("items_per_second")
            if ips:
                ns = 1e9 / ips
            else:
                ns = b["real_time"] * scale.get(b.get("time_unit", "ns"), 1.0)
            res.setdefault(name, {})[a] = ns
    return res, names


def table(headers, rows, align=None):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).rjust(w) if i else str(h).ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for r in rows:
        lines.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def md_table(headers, rows):
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


def gnuplot_histogram(out, name, title, ylabel, headers, data_rows, logscale=True):
    dat = os.path.join(out, f"{name}.dat")
    with open(dat, "w") as f:
        f.write("workload " + " ".join(headers) + "\n")
        for label, vals in data_rows:
            f.write(label + " " + " ".join("NaN" if v is None or math.isnan(v) else f"{v:.6g}" for v in vals) + "\n")
    gp = os.path.join(out, f"{name}.gp")
    ncol = len(headers)
    with open(gp, "w") as f:
        f.write(f"""# Rendered by bench/run, in this folder: gnuplot {name}.gp
set terminal pngcairo size 1400,600 font ",10"
set output "{name}.png"
set title "{title}"
set ylabel "{ylabel}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -30 scale 0
set grid ytics
set key outside right top
{'set logscale y' if logscale else ''}
set datafile missing "NaN"
plot for [i=2:{ncol + 1}] "{name}.dat" using i:xtic(1) title columnheader(i)
""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--allocators", default=",".join(PEER_ORDER))
    args = ap.parse_args()
    out = args.out
    allocs = [a for a in args.allocators.split(",") if a]
    meta = read_meta(out)
    runs, fails, workloads = load_runs(out)
    rows = summarise(runs, workloads, allocs)
    have_glibc = "glibc" in allocs
    have_hak = "hakmem" in allocs
    report = []
    md = []

    # ------------------------------------------------------------ summary.csv
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "allocator", "runs", "median_ops_per_sec", "spread", "ratio_to_glibc",
                     "median_peak_rss_kb", "rss_ratio_to_glibc", "median_cpu_s"])
        for r in rows:
            for a in allocs:
                if a in r["med"]:
                    wr.writerow([r["workload"], a, len(runs[(r["workload"], a)]), f"{r['med'][a]:.0f}",
                                 f"{r['spread'][a]:.3f}", f"{r['ratio'][a]:.4f}", f"{r['rss'][a]:.0f}",
                                 f"{r['rss_ratio'][a]:.4f}", f"{r['cpu'][a]:.2f}"])

    # ------------------------------------------------------------ throughput
    if rows:
        headers = ["workload"] + allocs + (["hakmem/best", "best peer"] if have_hak else [])
        trows = []
        for r in rows:
            line = [r["workload"]]
            for a in allocs:
                if a in r["med"]:
                    line.append(f"{human(r['med'][a])} ({fmt_ratio(r['ratio'][a])})" if have_glibc
                                else human(r["med"][a]))
                else:
                    line.append("FAIL")
            if have_hak:
                line += [fmt_ratio(r["vs_best"]), r["best"] or "-"]
            trows.append(line)
        geo = ["geomean vs glibc"] + [fmt_ratio(geomean([r["ratio"].get(a) for r in rows])) for a in allocs]
        if have_hak:
            geo += [fmt_ratio(geomean([r["vs_best"] for r in rows])), ""]
        trows.append(geo)
        nrep = meta.get("repeats", "?")
        title = (f"Throughput: median ops/sec over {nrep} runs of {meta.get('duration', '?')} s"
                 f" (ratio to glibc; higher is better)")
        report += [title, table(headers, trows), ""]
        md += [f"## {title}", "", md_table(headers, trows), ""]

        # -------------------------------------------------------- RSS
        headers = ["workload"] + allocs + (["hakmem/leanest", "leanest peer"] if have_hak else [])
        rrows = []
        for r in rows:
            line = [r["workload"]]
            for a in allocs:
                if a in r["rss"]:
                    line.append(f"{mib(r['rss'][a])} ({fmt_ratio(r['rss_ratio'][a])})" if have_glibc
                                else mib(r["rss"][a]))
                else:
                    line.append("FAIL")
            if have_hak:
                line += [fmt_ratio(r["rss_vs_lean"]), r["lean"] or "-"]
            rrows.append(line)
        geo = ["geomean vs glibc"] + [fmt_ratio(geomean([r["rss_ratio"].get(a) for r in rows])) for a in allocs]
        if have_hak:
            geo += [fmt_ratio(geomean([r["rss_vs_lean"] for r in rows])), ""]
        rrows.append(geo)
        title = "Peak RSS: median MiB (ratio to glibc; lower is better)"
        report += [title, table(headers, rrows), ""]
        md += [f"## {title}", "", md_table(headers, rrows), ""]

        # -------------------------------------------------------- spread
        srows = [[r["workload"]] + [f"{100 * r['spread'][a]:.0f}% / {r['cpu'][a]:.2f}s" if a in r["spread"] else "-"
                                    for a in allocs] for r in rows]
        md += ["## Run-to-run spread of ops/sec ((max - min) / median) and median CPU seconds per run", "",
               "CPU seconds (user + system, all threads) show how much of the 2 cores a run really got on a"
               " shared machine; a multi-threaded run that got much less than threads x duration was starved.", "",
               md_table(["workload"] + allocs, srows), ""]

        # -------------------------------------------------------- losses
        if have_hak:
            lose = []
            for r in rows:
                if "hakmem" not in r["med"]:
                    lose.append(f"- {r['workload']}: hakmem FAILED")
                    continue
                if not math.isnan(r["vs_best"]) and r["vs_best"] < 1.0:
                    lose.append(f"- {r['workload']}: throughput {r['vs_best']:.2f}x of {r['best']}"
                                f" ({human(r['med']['hakmem'])} vs {human(r['med'][r['best']])} ops/s)")
                if have_glibc and r["ratio"].get("hakmem", 2) < 1.0:
                    lose.append(f"- {r['workload']}: slower than glibc, {r['ratio']['hakmem']:.2f}x")
                if not math.isnan(r["rss_vs_lean"]) and r["rss_vs_lean"] > 1.25:
                    lose.append(f"- {r['workload']}: peak RSS {r['rss_vs_lean']:.2f}x {r['lean']}'s"
                                f" ({mib(r['rss']['hakmem'])} vs {mib(r['rss'][r['lean']])} MiB)")
            text = lose or ["- nowhere: hakmem is at least as fast as every peer and within 1.25x of the leanest"]
            report += ["Where hakmem loses (throughput below the best peer or glibc; peak RSS over 1.25x the leanest)"]
            report += text + [""]
            md += ["## Where hakmem loses", "",
                   "Throughput below the best peer or glibc; peak RSS above 1.25x the leanest peer.", ""]
            md += text + [""]
        if fails:
            text = [f"- {w} under {a}, repeat {rep}" for w, a, rep in fails]
            report += ["Failed runs (not in the medians):"] + text + [""]
            md += ["## Failed runs (not in the medians)", ""] + text + [""]

        gnuplot_histogram(out, "throughput", "Throughput relative to glibc (median ops/sec; higher is better)",
                          "ratio to glibc (log scale)", allocs,
                          [(r["workload"], [r["ratio"].get(a, float("nan")) for a in allocs]) for r in rows])
        gnuplot_histogram(out, "rss", "Peak RSS (median; lower is better)", "MiB (log scale)", allocs,
                          [(r["workload"], [r["rss"][a] / 1024 if a in r["rss"] else float("nan") for a in allocs])
                           for r in rows])

    # ------------------------------------------------------------ hot path
    hp, sizes, iters = load_hotpath(out)
    if hp:
        hallocs = [a for a in allocs if any((a, s) in hp for s in sizes)]
        hrows = [[f"{s} B"] + [f"{hp[(a, s)]:.2f}" if (a, s) in hp else "-" for a in hallocs] for s in sizes]
        title = (f"Hot path: instructions per malloc+free pair (callgrind, {iters} pairs, 64 live blocks"
                 " round robin, single thread; lower is better)")
        report += [title, table(["size"] + hallocs, hrows), ""]
        md += [f"## {title}", "", md_table(["size"] + hallocs, hrows), "",
               "Counted inside `hotpath_measure()` only (warm-up excluded), minus the loop's own instructions"
               " (including the PLT jumps); repeatable to the instruction (`bench/callgrind --check`).", ""]
        gnuplot_histogram(out, "hotpath", "Instructions per malloc+free pair (callgrind; lower is better)",
                          "instructions", hallocs,
                          [(f"{s}B", [hp.get((a, s), float("nan")) for a in hallocs]) for s in sizes],
                          logscale=False)

    # ------------------------------------------------------------ micro
    micro, names = load_micro(out, allocs)
    if micro:
        mallocs = [a for a in allocs if any(a in micro[n] for n in names)]
        with open(os.path.join(out, "micro.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["benchmark"] + [f"{a}_ns_per_item" for a in mallocs])
            for n in names:
                wr.writerow([n] + [f"{micro[n][a]:.3f}" if a in micro[n] else "" for a in mallocs])
        mrows = []
        for n in names:
            vals = micro[n]
            peers = [vals[a] for a in mallocs if a != "hakmem" and a in vals]
            best = min(peers) if peers else None
            mrows.append([n] + [f"{vals[a]:.1f}" if a in vals else "-" for a in mallocs] +
                         ([fmt_ratio(vals["hakmem"] / best) if best and "hakmem" in vals else "-"]
                          if "hakmem" in mallocs else []))
        hdr = ["benchmark"] + mallocs + (["hakmem/best"] if "hakmem" in mallocs else [])
        title = "Microbenchmarks (Google Benchmark): ns per item (lower is better; hakmem/best < 1 means hakmem wins)"
        report += [title, table(hdr, mrows), ""]
        md += [f"## {title}", "", md_table(hdr, mrows), ""]

    # ------------------------------------------------------------ REPORT.md
    head = ["# hakmem benchmark report", ""]
    for k in ("date", "commit", "host", "compiler", "hakmem_lib", "command", "repeats", "duration", "threads",
              "load_at_start", "load_at_end", "elapsed"):
        if k in meta:
            head.append(f"- {k}: `{meta[k]}`")
    pk = [f"{k[4:]} {v}" for k, v in meta.items() if k.startswith("pkg.")]
    if pk:
        head.append("- packages: " + ", ".join(pk))
    head += ["",
             "Workloads run for a fixed time and are compared by the work they did (ops/sec), never by wall"
             " time. Allocators are interleaved: each repeat runs every workload under each allocator in turn,"
             " the starting allocator rotating. Peak RSS comes from `/usr/bin/time -f %M`. Raw runs:"
             " `raw.csv`; medians: `summary.csv`.", "",
             "![throughput](throughput.png)", "", "![peak RSS](rss.png)", ""]
    if hp:
        head += ["![hot path](hotpath.png)", ""]
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(head + md) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
