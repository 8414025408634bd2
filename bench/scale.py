#!/usr/bin/env python3
"""How proctor's cost per iteration grows with the workspace: the same trivial research loop in
workspaces with 1,000 and 100,000 tracked files (plus an ignored data directory of the given size),
side by side, interleaved. A run that changes one file must cost about the same at 100,000 files as at
1,000 (issue 10: at most 1.5x the 1,000-file overhead).

Per iteration = the time between consecutive records in runs.jsonl (the baseline and start-up
excluded); outside = per iteration - the experiment's and the evaluator's wall time inside their
sandboxes (proctor's own work: agent, validation, pins, sandbox start, keep/revert, ledger).

Run through bench/scale.sh, or directly: PROCTOR_BIN=... python3 bench/scale.py [--files 1000,100000]
[-n ITERATIONS] [--rounds R] [--data-mib M] [--check RATIO] (a ratio over RATIO gets up to two more
rounds before it fails).
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from loop import PROCTOR_TOML  # noqa: E402  the same trivial workspace as the loop benchmark


def make_template(path, files, data_mib):
    """The loop benchmark's template plus `files` tracked text files under corpus/ (1,000 per
    directory) and an ignored data/ directory holding one sparse file of `data_mib` MiB and 1,000
    small ones (the user's dataset: never walked, never read)."""
    B.make_template(path, PROCTOR_TOML)
    for i in range(files):
        d = os.path.join(path, "corpus", "%04d" % (i // 1000))
        if i % 1000 == 0:
            os.makedirs(d)
        with open(os.path.join(d, "f%06d.txt" % i), "w") as f:
            f.write("row %d\n" % i)
    with open(os.path.join(path, ".gitignore"), "w") as f:
        f.write("data/\n")


def add_data(ws, data_mib):
    data = os.path.join(ws, "data")
    os.makedirs(data)
    with open(os.path.join(data, "big.bin"), "wb") as f:
        f.truncate(data_mib << 20)
    for i in range(1000):
        with open(os.path.join(data, "s%04d.txt" % i), "w") as f:
            f.write("%d\n" % i)


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="1000,100000", help="tracked file counts, comma-separated")
    ap.add_argument("-n", "--iterations", type=int, default=10, help="iterations per run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--data-mib", type=int, default=1024, help="size of the ignored data file (sparse), MiB")
    ap.add_argument("--check", type=float, default=0, help="exit 1 if the largest/smallest 'outside' ratio exceeds this")
    args = ap.parse_args()
    counts = [int(x) for x in args.files.split(",")]
    proctor = os.environ.get("PROCTOR_BIN") or os.path.join(B.REPO, ".build-static/release/proctor")
    if not os.access(proctor, os.X_OK):
        sys.exit("missing %s: build with `swift build -c release` or run bench/scale.sh" % proctor)
    env = dict(os.environ)
    python = B.real_python()
    env["PATH"] = os.path.dirname(python) + ":" + env.get("PATH", os.defpath)
    tmp = tempfile.mkdtemp(prefix="proctor-bench-scale-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    env["PROCTOR_MACHINE_LOCK"] = os.path.join(tmp, "machine.lock")
    try:
        templates = {}
        for n in counts:
            t0 = time.perf_counter()
            templates[n] = os.path.join(tmp, "template-%d" % n)
            make_template(templates[n], n, args.data_mib)
            B.log("scale: template with %d files in %.1f s" % (n, time.perf_counter() - t0))
        counter = [0]
        per, outside, inside = {n: [] for n in counts}, {n: [] for n in counts}, {n: [] for n in counts}
        by_status = {n: {"keep": [], "discard": []} for n in counts}  # outside ms of keeps and of discards

        def run(n):
            counter[0] += 1
            ws = os.path.join(tmp, "ws-%d-%d" % (n, counter[0]))
            init = subprocess.run([proctor, "init", ws, "--template", templates[n]], env=env, capture_output=True, text=True)
            if init.returncode != 0:
                sys.exit("proctor init failed:\n" + init.stdout + init.stderr)
            add_data(ws, args.data_mib)
            log = os.path.join(tmp, "run-%d.log" % counter[0])
            with open(log, "w") as out:
                rc = subprocess.run([proctor, "run", "--workspace", ws, "--iterations", str(args.iterations)],
                                    env=env, stdout=out, stderr=subprocess.STDOUT).returncode
            recs = [json.loads(line) for line in open(os.path.join(ws, ".proctor/runs.jsonl"))]
            if rc != 0 or len(recs) != args.iterations + 1:
                sys.exit("proctor run failed (%d, %d records); log:\n%s" % (rc, len(recs), open(log).read()[-3000:]))
            times = [parse_time(r["time"]) for r in recs]
            for a, b, r in zip(times, times[1:], recs[1:]):
                d = r.get("durations", {})
                sandboxed = (d.get("experiment", 0) + d.get("evaluator", 0)) * 1000
                per[n].append((b - a) * 1000)
                inside[n].append(sandboxed)
                outside[n].append((b - a) * 1000 - sandboxed)
                if r.get("status") in by_status[n]:
                    by_status[n][r["status"]].append((b - a) * 1000 - sandboxed)
            shutil.rmtree(ws, ignore_errors=True)
            return {}

        B.log("scale: %s files, %d iterations per run, %d interleaved rounds" % (counts, args.iterations, args.rounds))
        B.interleaved(counts, args.rounds, 0, run)
        rounds = args.rounds

        def outside_ratio():
            return B.median(outside[counts[-1]]) / B.median(outside[counts[0]])

        # Under --check, a ratio over the limit gets up to two more rounds before it is judged: a
        # burst of load on a shared machine lands on one run, a cost that grows with the file count
        # shows in every round.
        while args.check and outside_ratio() > args.check and rounds < args.rounds + 2:
            B.log("scale: outside ratio %.2f above --check %.2f: one more round" % (outside_ratio(), args.check))
            B.interleaved(counts, 1, 0, run)
            rounds += 1
        base = B.median(outside[counts[0]])

        def kind(n, status):  # "median (count)" of one kind of iteration's outside ms
            xs = by_status[n][status]
            return "%.1f (%d)" % (B.median(xs), len(xs)) if xs else "-"

        rows = []
        for n in counts:
            rows.append(["%d" % n, "%.1f" % B.median(per[n]), "%.1f" % B.percentile(per[n], 90),
                         "%.1f" % B.median(inside[n]), "%.1f" % B.median(outside[n]),
                         "%.2f" % (B.median(outside[n]) / base), kind(n, "keep"), kind(n, "discard")])
        ratio = outside_ratio()
        out = ["# proctor scale benchmark: cost per iteration against the number of tracked files", ""]
        out += B.machine_lines()
        out += ["", "%d iterations per run, %d interleaved rounds; an ignored data/ of %d MiB (sparse) + 1,000 files"
                % (args.iterations, rounds, args.data_mib),
                "per iteration: between consecutive runs.jsonl records; inside: experiment + evaluator wall time;",
                "outside = per iteration - inside (proctor's own work). Medians over every iteration of every round.", ""]
        out += B.table(["tracked files", "ms/iter", "p90", "inside ms", "outside ms", "outside / first",
                        "outside: keeps (n)", "discards (n)"], rows)
        out += ["", "outside ratio %d / %d files: %.2f" % (counts[-1], counts[0], ratio)]
        B.emit("scale", out)
        if args.check and ratio > args.check:
            sys.exit("scale: outside ratio %.2f exceeds %.2f" % (ratio, args.check))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
