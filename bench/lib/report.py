#!/usr/bin/env python3
"""Summarises a bench/run results folder.

Reads raw.csv (one row per run), hotpath.csv (bench/callgrind), micro-*.json
(Google Benchmark) and meta.txt; prints the tables; writes summary.csv,
micro.csv, REPORT.md and the gnuplot data and scripts (*.dat, *.gp) that
bench/run renders to PNG.

Figures: the median over repeats of each workload's ops/sec and peak RSS;
ratios to glibc (higher is better for throughput, lower for RSS); hakmem
against the best peer (the fastest, or the leanest, of the others); and
geometric means of the ratios over the workloads. The hardened variant,
when measured, is ours and never a peer: it is set against release alone,
against the targets below.
"""
import argparse
import csv
import glob
import json
import math
import os
import statistics

PEER_ORDER = ["hakmem", "glibc", "mimalloc", "jemalloc", "tcmalloc"]
HARDENED = "hakmem-hardened"
OURS = ("hakmem", HARDENED)
# What the hardened variant may cost against release: a floor on the
# geometric mean of its throughput ratios (single workloads may pay more,
# the tiny hot paths most), a ceiling on its peak RSS on every workload and
# in the geometric mean.
HARDENED_MIN_THROUGHPUT = 0.85
HARDENED_MAX_RSS = 1.15
# Fixed colours, hardened a paler shade of release's, so bars keep their
# meaning whichever allocators a run names.
COLOURS = {"hakmem": "#9400d3", HARDENED: "#d9a6f0", "glibc": "#009e73", "mimalloc": "#56b4e9",
           "jemalloc": "#e69f00", "tcmalloc": "#f0e442"}


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
    """{(workload, allocator): [run dicts]}, failed runs, workloads in order."""
    runs, fails, order = {}, [], []
    path = os.path.join(out, "raw.csv")
    if not os.path.exists(path):
        return runs, fails, order
    for row in csv.DictReader(open(path)):
        w, a = row["workload"], row["allocator"]
        if w not in order:
            order.append(w)
        if row["status"] != "ok":
            fails.append((w, a, row["repeat"]))
            continue
        runs.setdefault((w, a), []).append({k: float(row.get(k) or 0) for k in
                                            ("ops_per_sec", "ops_per_cpu_sec", "peak_rss_kb", "cpu_s")})
    return runs, fails, order


def summarise(runs, workloads, allocs, key, higher_better=True):
    """Per workload, for one figure: medians, spreads, ratios to glibc, and
    hakmem against the best peer."""
    rows = []
    for w in workloads:
        med, spread = {}, {}
        for a in allocs:
            vals = [r[key] for r in runs.get((w, a), [])]
            if not vals:
                continue
            med[a] = statistics.median(vals)
            spread[a] = (max(vals) - min(vals)) / med[a] if med[a] > 0 else float("nan")
        g = med.get("glibc")
        ratio = {a: (med[a] / g if g else float("nan")) for a in med}
        peers = [a for a in med if a not in OURS and med[a] > 0]
        pick = max if higher_better else min
        best = pick(peers, key=lambda a: med[a]) if peers else None
        vs_best = med["hakmem"] / med[best] if best and "hakmem" in med else float("nan")
        rows.append(dict(workload=w, med=med, spread=spread, ratio=ratio, best=best, vs_best=vs_best))
    return rows


def metric_table(rows, allocs, fmt, best_label):
    """Rows of a medians table: 'value (ratio to glibc)' per allocator, then
    hakmem against the best peer, then geometric means."""
    have_glibc, have_hak = "glibc" in allocs, "hakmem" in allocs
    headers = ["workload"] + allocs + ([f"hakmem/{best_label}", f"{best_label} peer"] if have_hak else [])
    out = []
    for r in rows:
        line = [r["workload"]]
        for a in allocs:
            if a in r["med"]:
                line.append(f"{fmt(r['med'][a])} ({fmt_ratio(r['ratio'][a])})" if have_glibc else fmt(r["med"][a]))
            else:
                line.append("FAIL")
        if have_hak:
            line += [fmt_ratio(r["vs_best"]), r["best"] or "-"]
        out.append(line)
    geo = ["geomean vs glibc"] + [fmt_ratio(geomean([r["ratio"].get(a) for r in rows])) for a in allocs]
    if have_hak:
        geo += [fmt_ratio(geomean([r["vs_best"] for r in rows])), ""]
    out.append(geo)
    return headers, out


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


def load_reasons():
    """bench/losses.txt: why hakmem is behind where it is, and the plan.

    One entry per line, `name | reason`, where name is a workload or a
    microbenchmark's name (or the start of one); '#' starts a comment.
    """
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "losses.txt")
    reasons = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "|" not in line:
                    continue
                name, why = (x.strip() for x in line.split("|", 1))
                reasons.append((name, why))
    return reasons


def reason_for(reasons, name):
    for key, why in reasons:
        if name == key or name.startswith(key + "/"):
            return why
    return None


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
    series = ", ".join(f'"{name}.dat" using {i + 2}' + (":xtic(1)" if i == 0 else "") +
                       f" title columnheader({i + 2})" + (f' lc rgb "{COLOURS[h]}"' if h in COLOURS else "")
                       for i, h in enumerate(headers))
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
plot {series}
""")


def met(ok):
    return "met" if ok else "**not met**"


def hardened_section(thr, thr_cpu, rss, hp, sizes, micro, meta):
    """Markdown lines setting the hardened variant against release: per
    workload the two median ratios, their geometric means, and the targets,
    each marked met or not from these numbers."""
    rows, thr_r, cpu_r, rss_r, over, missing = [], [], [], [], [], []
    for t, c, m in zip(thr, thr_cpu, rss):
        w = t["workload"]
        rel, hard = t["med"].get("hakmem"), t["med"].get(HARDENED)
        if rel is None or hard is None:
            # A hardened run that aborted is a finding, not a gap to skip.
            who = "hardened" if hard is None else "release"
            missing.append(f"{w} ({who} FAILED)")
            rows.append([w, human(rel), human(hard), "-", "-", mib(m["med"].get("hakmem")),
                         mib(m["med"].get(HARDENED)), "-", f"{who} FAILED"])
            continue
        tr = hard / rel if rel > 0 else float("nan")
        cr = c["med"][HARDENED] / c["med"]["hakmem"] if c["med"].get("hakmem") else float("nan")
        rr = m["med"][HARDENED] / m["med"]["hakmem"] if m["med"].get("hakmem") else float("nan")
        thr_r.append(tr)
        cpu_r.append(cr)
        rss_r.append(rr)
        if not rr <= HARDENED_MAX_RSS:
            over.append(f"{w} {fmt_ratio(rr)}x")
        rows.append([w, human(rel), human(hard), fmt_ratio(tr), fmt_ratio(cr), mib(m["med"]["hakmem"]),
                     mib(m["med"][HARDENED]), fmt_ratio(rr), met(rr <= HARDENED_MAX_RSS)])
    g_thr, g_cpu, g_rss = geomean(thr_r), geomean(cpu_r), geomean(rss_r)
    rows.append(["geomean", "", "", fmt_ratio(g_thr), fmt_ratio(g_cpu), "", "", fmt_ratio(g_rss),
                 met(g_rss <= HARDENED_MAX_RSS and not missing)])
    hdr = ["workload", "release ops/s", "hardened ops/s", "hardened/release ops/s", "hardened/release per CPU-s",
           "release MiB", "hardened MiB", "hardened/release peak RSS", f"RSS <= {HARDENED_MAX_RSS:.2f}x"]
    failed = f" (no comparison on {', '.join(missing)})" if missing else ""
    nrep = meta.get("repeats", "?")
    md = ["## Hardened variant against release", "",
          f"`{HARDENED}` (build/hardened, `make hardened`; SECURITY.md) ran in the same interleaved runs as"
          f" release `hakmem`; ratios are of medians over {nrep} run(s). It is ours, not a peer: the ratios to the"
          " best peer and \"where hakmem loses\" above leave it out. Per CPU-second is shown for a steadier view"
          " on a shared machine; the targets are judged on ops/sec and peak RSS.", "",
          md_table(hdr, rows), "",
          f"- Throughput: geomean {fmt_ratio(g_thr)}x release; target >= {HARDENED_MIN_THROUGHPUT:.2f}x:"
          f" {met(g_thr >= HARDENED_MIN_THROUGHPUT and not missing)}{failed}",
          f"- Peak RSS: geomean {fmt_ratio(g_rss)}x release; target <= {HARDENED_MAX_RSS:.2f}x:"
          f" {met(g_rss <= HARDENED_MAX_RSS and not missing)}{failed}",
          f"- Peak RSS per workload: {len(rss_r) - len(over)} of {len(rows) - 1} within"
          f" {HARDENED_MAX_RSS:.2f}x; target: every one:"
          f" {met(not over and not missing)}" + (f" (over: {', '.join(over)})" if over else "") + failed]
    try:
        few = float(nrep) < 3
    except ValueError:
        few = False
    if few:
        md.append(f"- With {nrep} run(s) per workload one noisy run decides a ratio; judge the targets on"
                  " `make bench`'s 5 repeats.")
    hsizes = [s_ for s_ in sizes if ("hakmem", s_) in hp and (HARDENED, s_) in hp]
    if hsizes:
        md += ["", "Hot path (callgrind, instructions per malloc+free pair; no target):", "",
               md_table(["size", "release", "hardened", "hardened/release"],
                        [[f"{s_} B", f"{hp[('hakmem', s_)]:.2f}", f"{hp[(HARDENED, s_)]:.2f}",
                          fmt_ratio(hp[(HARDENED, s_)] / hp[("hakmem", s_)])] for s_ in hsizes])]
    md.append("")
    if any(HARDENED in v for v in micro.values()):
        md.append("Microbenchmarks: the table below has a hardened column and hardened/release; hakmem/best"
                  " compares release with the peers only.")
    elif micro:
        md.append("Microbenchmarks: no figures for the hardened variant (its run failed; see the log).")
    else:
        md.append("Microbenchmarks: not run for this report (`--no-micro`).")
    md.append("")
    return md


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--allocators", default=",".join(PEER_ORDER))
    args = ap.parse_args()
    out = args.out
    allocs = [a for a in args.allocators.split(",") if a]
    meta = read_meta(out)
    reasons = load_reasons()
    runs, fails, workloads = load_runs(out)
    thr = summarise(runs, workloads, allocs, "ops_per_sec")
    thr_cpu = summarise(runs, workloads, allocs, "ops_per_cpu_sec")
    rss = summarise(runs, workloads, allocs, "peak_rss_kb", higher_better=False)
    cpu = summarise(runs, workloads, allocs, "cpu_s")
    have_glibc = "glibc" in allocs
    have_hak = "hakmem" in allocs
    hp, sizes, iters = load_hotpath(out)
    micro, names = load_micro(out, allocs)
    report = []
    md = []

    # ------------------------------------------------------------ summary.csv
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "allocator", "runs", "median_ops_per_sec", "spread", "ratio_to_glibc",
                     "median_ops_per_cpu_sec", "cpu_ratio_to_glibc", "median_peak_rss_kb", "rss_ratio_to_glibc",
                     "median_cpu_s"])
        for t, c, m, u in zip(thr, thr_cpu, rss, cpu):
            for a in allocs:
                if a in t["med"]:
                    wr.writerow([t["workload"], a, len(runs[(t["workload"], a)]), f"{t['med'][a]:.0f}",
                                 f"{t['spread'][a]:.3f}", f"{t['ratio'][a]:.4f}", f"{c['med'][a]:.0f}",
                                 f"{c['ratio'][a]:.4f}", f"{m['med'][a]:.0f}", f"{m['ratio'][a]:.4f}",
                                 f"{u['med'][a]:.2f}"])

    if thr:
        nrep, dur = meta.get("repeats", "?"), meta.get("duration", "?")
        title = f"Throughput: median ops/sec over {nrep} runs of {dur} s (ratio to glibc; higher is better)"
        h, t = metric_table(thr, allocs, human, "best")
        report += [title, table(h, t), ""]
        md += [f"## {title}", "", md_table(h, t), ""]

        title = "Peak RSS: median MiB (ratio to glibc; lower is better)"
        h, t = metric_table(rss, allocs, lambda kb: mib(kb), "leanest")
        report += [title, table(h, t), ""]
        md += [f"## {title}", "", md_table(h, t), ""]

        title = "Throughput per CPU second: median ops per CPU-second (ratio to glibc; higher is better)"
        h, t = metric_table(thr_cpu, allocs, human, "best")
        report += [title, table(h, t), ""]
        md += [f"## {title}", "",
               "Work divided by the CPU time the process used (all threads, user + system) over the same"
               " interval. Steadier than ops/sec when the machine is shared, but blind to time spent blocked"
               " (lock sleeps, waiting on the kernel's mmap lock), which ops/sec does charge.", "",
               md_table(h, t), ""]

        srows = [[t["workload"]] + [f"{100 * t['spread'][a]:.0f}% / {u['med'][a]:.2f}s" if a in t["spread"] else "-"
                                    for a in allocs] for t, u in zip(thr, cpu)]
        md += ["## Run-to-run spread of ops/sec ((max - min) / median) / median CPU seconds per run", "",
               "CPU seconds show how much of the machine a run got: a single-threaded run of d seconds that"
               " got much less than d CPU-seconds shared its core with other work.", "",
               md_table(["workload"] + allocs, srows), ""]

        # -------------------------------------------------------- losses
        if have_hak:
            lose = []
            for t, c, m in zip(thr, thr_cpu, rss):
                w = t["workload"]
                before = len(lose)
                if "hakmem" not in t["med"]:
                    lose.append(f"- {w}: hakmem FAILED")
                    continue
                if not math.isnan(t["vs_best"]) and t["vs_best"] < 1.0:
                    lose.append(f"- {w}: throughput {t['vs_best']:.2f}x {t['best']}'s"
                                f" ({human(t['med']['hakmem'])} vs {human(t['med'][t['best']])} ops/s;"
                                f" per CPU-second {c['vs_best']:.2f}x {c['best']}'s)")
                if have_glibc and t["ratio"].get("hakmem", 2) < 1.0:
                    lose.append(f"- {w}: slower than glibc, {t['ratio']['hakmem']:.2f}x")
                if not math.isnan(m["vs_best"]) and m["vs_best"] > 1.25:
                    lose.append(f"- {w}: peak RSS {m['vs_best']:.2f}x {m['best']}'s"
                                f" ({mib(m['med']['hakmem'])} vs {mib(m['med'][m['best']])} MiB)")
                why = reason_for(reasons, w)
                if why and len(lose) > before:
                    lose.append(f"  - why, and the plan: {why}")
            text = lose or ["- nowhere: hakmem is at least as fast as every peer and within 1.25x of the leanest"]
            report += ["Where hakmem loses (ops/sec below the best peer or glibc; peak RSS over 1.25x the leanest)"]
            report += text + [""]
            md += ["## Where hakmem loses", "",
                   "Median ops/sec below the best peer's or glibc's; peak RSS above 1.25x the leanest peer's.", ""]
            md += text + [""]
        if have_hak and HARDENED in allocs:
            sec = hardened_section(thr, thr_cpu, rss, hp, sizes, micro, meta)
            report += [line.replace("**", "") for line in [sec[0][3:]] + sec[2:]]
            md += sec
        if fails:
            text = [f"- {w} under {a}, repeat {rep}" for w, a, rep in fails]
            report += ["Failed runs (not in the medians):"] + text + [""]
            md += ["## Failed runs (not in the medians)", ""] + text + [""]

        if have_glibc:
            gnuplot_histogram(out, "throughput", "Throughput relative to glibc (median ops/sec; higher is better)",
                              "ratio to glibc (log scale)", allocs,
                              [(t["workload"], [t["ratio"].get(a, float("nan")) for a in allocs]) for t in thr])
        else:
            gnuplot_histogram(out, "throughput", "Throughput (median ops/sec; higher is better)",
                              "ops/sec (log scale)", allocs,
                              [(t["workload"], [t["med"].get(a, float("nan")) for a in allocs]) for t in thr])
        gnuplot_histogram(out, "rss", "Peak RSS (median; lower is better)", "MiB (log scale)", allocs,
                          [(m["workload"], [m["med"][a] / 1024 if a in m["med"] else float("nan") for a in allocs])
                           for m in rss])

    # ------------------------------------------------------------ hot path
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
    if micro:
        mallocs = [a for a in allocs if any(a in micro[n] for n in names)]
        with_hard = "hakmem" in mallocs and HARDENED in mallocs
        with open(os.path.join(out, "micro.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["benchmark"] + [f"{a}_ns_per_item" for a in mallocs])
            for n in names:
                wr.writerow([n] + [f"{micro[n][a]:.3f}" if a in micro[n] else "" for a in mallocs])
        mrows = []
        for n in names:
            vals = micro[n]
            peers = [vals[a] for a in mallocs if a not in OURS and a in vals]
            best = min(peers) if peers else None
            mrows.append([n] + [f"{vals[a]:.1f}" if a in vals else "-" for a in mallocs] +
                         ([fmt_ratio(vals["hakmem"] / best) if best and "hakmem" in vals else "-"]
                          if "hakmem" in mallocs else []) +
                         ([fmt_ratio(vals[HARDENED] / vals["hakmem"]) if "hakmem" in vals and HARDENED in vals
                           else "-"] if with_hard else []))
        hdr = ["benchmark"] + mallocs + (["hakmem/best"] if "hakmem" in mallocs else []) + \
            (["hardened/release"] if with_hard else [])
        title = "Microbenchmarks (Google Benchmark): ns per item (lower is better; hakmem/best < 1 means hakmem wins)"
        report += [title, table(hdr, mrows), ""]
        md += [f"## {title}", "", md_table(hdr, mrows), ""]
        if "hakmem" in mallocs:
            behind = []
            for n in names:
                vals = micro[n]
                peers = {a: vals[a] for a in mallocs if a not in OURS and a in vals}
                if "hakmem" not in vals or not peers:
                    continue
                best = min(peers, key=peers.get)
                if vals["hakmem"] > peers[best]:
                    behind.append(f"- {n}: {vals['hakmem'] / peers[best]:.2f}x {best}'s time"
                                  f" ({vals['hakmem']:.1f} vs {peers[best]:.1f} ns)")
                    why = reason_for(reasons, n)
                    if why:
                        behind.append(f"  - why, and the plan: {why}")
            text = behind or ["- nowhere"]
            title = "Where hakmem loses: microbenchmarks (ns per item above the best peer's)"
            report += [title] + text + [""]
            md += [f"## {title}", ""] + text + [""]

    # ------------------------------------------------------------ REPORT.md
    head = ["# hakmem benchmark report", ""]
    for k in ("date", "commit", "host", "compiler", "hakmem_lib", "hardened_lib", "command", "repeats", "duration", "threads",
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
    md += ["## Reproduce", "",
           "```",
           "make bench                                   # build/release and the hardened library, then bench/run",
           "bench/run --quick                            # one 0.3 s repeat of everything, ~1 min",
           "bench/run --workloads mstress,xmalloc --allocators hakmem,tcmalloc --repeats 9",
           "bench/callgrind --check                      # hot-path counts, each run twice and compared",
           "make hardened && bench/run --allocators hakmem,hakmem-hardened --repeats 5   # hardened vs release",
           "LD_PRELOAD=$PWD/build/release/lib/libhakmem.so build/release/bench/larson --duration=1 --threads=2",
           "build/release/bench/<workload> --help        # each workload's knobs",
           "```", ""]
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(head + md) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
