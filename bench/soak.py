#!/usr/bin/env python3
"""Soak (issue 10): one `proctor run --iterations N` (default 1,000) of a trivial workspace (the
built-in mutate agent, an experiment and an evaluator that do almost nothing). The supervisor's
resident memory (VmRSS from /proc/PID/status) and open descriptors (/proc/PID/fd) are sampled
every 0.1 s against the iteration (rows in results.tsv); seconds per iteration come from the
records' times in runs.jsonl. Compared: the early window (default iterations 100-200) against the
late one (800-1,000). Exits 1 when the RSS ratio exceeds --max-ratio (1.05), the fewest
descriptors open grew by more than --max-fd-growth (2), or the seconds-per-iteration ratio exceeds
--max-time-ratio (1.10); a run over that limit alone is followed by up to two more, and the median
of their ratios is judged (a burst of load slows one run, a supervisor that slows down every run).

Run through bench/soak.sh, or: PROCTOR_BIN=... python3 bench/soak.py [-n N] [--early A-B] [--late C-D].
"""

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import reliability as R  # noqa: E402


def window(text):
    a, b = text.split("-")
    return int(a), int(b)


def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--iterations", type=int, default=1000)
    ap.add_argument("--early", type=window, default=None, help="iterations A-B (default 100-200, scaled to -n)")
    ap.add_argument("--late", type=window, default=None, help="iterations C-D (default 800-1000, scaled to -n)")
    ap.add_argument("--max-ratio", type=float, default=1.05, help="largest late/early RSS ratio (1.05)")
    # Descriptors are a count of about a dozen: one more in a window (its sampling missed every moment
    # between launches, as under load) is a 1.08 ratio, while a leak adds one per iteration or a few.
    ap.add_argument("--max-fd-growth", type=int, default=2, help="most descriptors the late window's fewest may exceed the early one's by (2)")
    ap.add_argument("--max-time-ratio", type=float, default=1.10, help="largest late/early s/iteration ratio (1.10)")
    args = ap.parse_args()
    n = args.iterations
    early = args.early or (n // 10, n // 5)
    late = args.late or (n * 4 // 5, n)

    tmp, proctor = R.scratch("soak")
    tag = "soak%d" % os.getpid()
    try:
        template = os.path.join(tmp, "template")
        R.make_template(template, tag, experiment=0, evaluator=0, agent="mutate", confirm=False)
        runs = [one_run(proctor, tmp, template, tag, n, early, late, args, 0)]
        # A seconds-per-iteration ratio over the limit, and nothing else wrong, gets up to two more
        # runs before it is judged (the median of the runs' ratios): a burst of load on a shared
        # machine slows one window of one run, while a supervisor that slows as the run grows does so
        # in every run. A memory, descriptor or consistency problem fails at once.
        while runs[-1]["slow"] and not runs[-1]["problems"] and len(runs) < 3:
            B.log("soak: seconds per iteration ratio %.3f above %.2f: one more run" % (runs[-1]["ratio"]["s/it"], args.max_time_ratio))
            runs.append(one_run(proctor, tmp, template, tag, n, early, late, args, len(runs)))
        last = runs[-1]
        problems = [p for r in runs for p in r["problems"]]
        time_ratio = B.median([r["ratio"]["s/it"] for r in runs])
        if not time_ratio <= args.max_time_ratio:
            problems.append("seconds per iteration ratio %.3f > %.2f%s" % (
                time_ratio, args.max_time_ratio, " (median of %d runs)" % len(runs) if len(runs) > 1 else ""))
        out = ["# proctor soak: %s of %d iterations, windows %d-%d and %d-%d" % (
            "one run" if len(runs) == 1 else "%d runs" % len(runs), n, early[0], early[1], late[0], late[1]), ""]
        out += B.machine_lines(["binary:    %s" % proctor.bin])
        out += ["", "the supervisor's VmRSS and open descriptors sampled every 0.1 s; s/iteration from runs.jsonl's times",
                "" if len(runs) == 1 else "(the tables are the last run's; seconds per iteration ratio per run: %s)\n"
                % ", ".join("%.3f" % r["ratio"]["s/it"] for r in runs)]
        out += last["table"]
        out += ["", "%d iterations in %.0f s; rows by status: %s" % (n, last["seconds"], last["statuses"]),
                "result: %s" % ("ok (RSS ratio <= %.2f, descriptors +%d at most, time ratio <= %.2f)" % (args.max_ratio, args.max_fd_growth, args.max_time_ratio)
                                if not problems else "FAILED")]
        out += ["  " + p for p in problems]
        B.emit("soak", out)
    finally:
        R.cleanup(tmp)
    sys.exit(1 if problems else 0)


def one_run(proctor, tmp, template, tag, n, early, late, args, index):
    """One run of `n` iterations, sampled: its problems other than the time ratio, whether that ratio
    is over the limit (`slow`), the ratios, and the tables."""
    ws = os.path.join(tmp, "ws-%d" % index)
    proctor.init(template, ws)
    locked = R.originals(ws, ["prepare.py"])
    log = ws + ".log"
    t0 = time.time()
    proc = proctor.start(["run", "--workspace", ws, "--iterations", str(n)], log)
    samples = []  # (iteration, rss kB, fds)
    while proc.poll() is None:
        it = len(R.ledger_lines(ws)) - 2
        rss, fds = vmrss_kb(proc.pid), fd_count(proc.pid)
        if rss is not None and fds is not None and it >= 0:
            samples.append((it, rss, fds))
        time.sleep(0.1)
    rc = proc.wait()
    seconds = time.time() - t0
    problems = []
    if rc != 0:
        problems.append("proctor run exited %d: %s" % (rc, open(log, errors="replace").read()[-800:]))
    rows, records, bad = R.ledger(ws)
    problems += bad
    if len(rows) != n + 1:
        problems.append("%d rows, expected %d" % (len(rows), n + 1))
    problems += R.check(proctor, ws, tag, locked)

    times = [datetime.datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() for r in records]
    per_it = {r["iteration"]: b - a for a, b, r in zip(times, times[1:], records[1:])}

    def stats(lo, hi):
        s = [x for x in samples if lo <= x[0] <= hi]
        secs = [per_it[i] for i in range(max(1, lo), hi + 1) if i in per_it]
        return {"samples": len(s), "rss": B.median([x[1] for x in s]), "rss max": max([x[1] for x in s] or [0]),
                # The fewest descriptors seen: what the supervisor holds between launches. A leak
                # raises it; a sample taken while a launch has its pipes open does not.
                "fds": min([x[2] for x in s] or [0]), "s/it": B.median(secs)}

    a, b = stats(*early), stats(*late)
    ratio = {k: (b[k] / a[k] if a[k] else float("nan")) for k in ("rss", "rss max", "fds", "s/it")}
    if not a["samples"] or not b["samples"]:
        problems.append("no samples in a window (early %d, late %d)" % (a["samples"], b["samples"]))
    if not ratio["rss"] <= args.max_ratio:
        problems.append("rss ratio %.3f > %.2f" % (ratio["rss"], args.max_ratio))
    if not b["fds"] - a["fds"] <= args.max_fd_growth:
        problems.append("fewest descriptors %d -> %d: grew by more than %d" % (a["fds"], b["fds"], args.max_fd_growth))
    statuses = {}
    for r in rows:
        statuses[r[4]] = statuses.get(r[4], 0) + 1

    # The curve, ten points, for the eye.
    curve = []
    for k in range(10):
        lo, hi = n * k // 10, n * (k + 1) // 10
        s = stats(lo, hi)
        curve.append(["%d-%d" % (lo, hi), s["samples"], "%.1f" % (s["rss"] / 1024), s["fds"],
                      "%.1f" % (s["s/it"] * 1000)])
    table = B.table(["window", "samples", "RSS MiB (median)", "RSS max MiB", "fds (min)", "ms/iteration (median)"],
                    [["%d-%d" % early, a["samples"], "%.1f" % (a["rss"] / 1024), "%.1f" % (a["rss max"] / 1024),
                      a["fds"], "%.1f" % (a["s/it"] * 1000)],
                     ["%d-%d" % late, b["samples"], "%.1f" % (b["rss"] / 1024), "%.1f" % (b["rss max"] / 1024),
                      b["fds"], "%.1f" % (b["s/it"] * 1000)],
                     ["late / early", "", "%.3f" % ratio["rss"], "%.3f" % ratio["rss max"], "%.3f" % ratio["fds"],
                      "%.3f" % ratio["s/it"]]])
    table += ["", "by tenth of the run:", ""]
    table += B.table(["iterations", "samples", "RSS MiB", "fds (min)", "ms/iteration"], curve)
    return {"problems": problems, "slow": not ratio["s/it"] <= args.max_time_ratio, "ratio": ratio,
            "table": table, "seconds": seconds, "statuses": statuses}


if __name__ == "__main__":
    main()
