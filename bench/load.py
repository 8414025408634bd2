#!/usr/bin/env python3
"""Load (issue 10): four `proctor run --wait --iterations K` on four workspaces that share one
machine lock (PROCTOR_MACHINE_LOCK), started --gap seconds apart (0.3) so that the order they ask
in is defined. Checked per round: each run exits 0 with K+1 rows and passes the consistency oracle
(none starved); no two runs ever had a sandbox at the same moment (sampled every 10 ms from the
process trees) and their spans [first record - baseline seconds, last record] do not overlap (one
after another); and they ran in the order they asked (`--wait` queues waiters by ticket, first come
first served).

Run through bench/load.sh, or: PROCTOR_BIN=... python3 bench/load.py [--runs 4] [-k K] [--rounds R].
"""

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import reliability as R  # noqa: E402


def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_round(proctor, tmp, r, runs, k, gap):
    """Returns (order they ran in, problems, overlap samples, wall seconds)."""
    wss, tags, locked = [], [], []
    for i in range(runs):
        tag = "load%d-%d-%d" % (os.getpid(), r, i)
        template = os.path.join(tmp, "template-%d-%d" % (r, i))
        R.make_template(template, tag, experiment=0.05, evaluator=0.05, agent="mutate", confirm=False)
        ws = os.path.join(tmp, "ws-%d-%d" % (r, i))
        proctor.init(template, ws)
        wss.append(ws)
        tags.append(tag)
        locked.append(R.originals(ws, ["prepare.py"]))
    procs = []
    t0 = time.time()
    for i, ws in enumerate(wss):
        procs.append(proctor.start(["run", "--workspace", ws, "--wait", "--iterations", str(k)],
                                   os.path.join(tmp, "run-%d-%d.log" % (r, i))))
        if i + 1 < runs:
            time.sleep(gap)
    overlaps, busy_since = 0, {}
    deadline = time.time() + 600
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        busy = [i for i, p in enumerate(procs) if p.poll() is None and R.children(p.pid)]
        if len(busy) > 1:
            overlaps += 1
        for i in busy:
            busy_since.setdefault(i, time.time())
        time.sleep(0.01)
    problems = []
    for i, p in enumerate(procs):
        if p.poll() is None:
            p.kill()
            problems.append("run %d did not finish within 600 s (starved?)" % i)
        rc = p.wait()
        if rc != 0:
            problems.append("run %d exited %d" % (i, rc))
    spans = []
    for i, ws in enumerate(wss):
        rows, records, _ = R.ledger(ws)
        if len(rows) != k + 1:
            problems.append("run %d: %d rows, expected %d" % (i, len(rows), k + 1))
        problems += ["run %d: %s" % (i, p) for p in R.check(proctor, ws, tags[i], locked[i])]
        if records:
            start = stamp(records[0]["time"]) - float(rows[0][5] or 0)
            spans.append((start, stamp(records[-1]["time"]), i))
    spans.sort()
    # A span starts at its baseline's record minus the baseline's seconds, which the ledger rounds to
    # 0.1 s: an overlap of up to 0.05 s is that rounding (the 10 ms sampling above is the exact check).
    for (s1, e1, i1), (s2, e2, i2) in zip(spans, spans[1:]):
        if s2 < e1 - 0.05:
            problems.append("runs %d and %d overlap by %.2f s" % (i1, i2, e1 - s2))
    if overlaps:
        problems.append("%d samples saw two runs with a sandbox at once" % overlaps)
    order = [i for _, _, i in spans]
    first_sandbox = sorted(busy_since, key=busy_since.get)
    return order, first_sandbox, problems, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("-k", "--iterations", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between the starts (0.3)")
    ap.add_argument("--allow-reorder", action="store_true",
                    help="report an order other than the asking order without failing")
    args = ap.parse_args()

    tmp, proctor = R.scratch("load")
    table, failures, reordered = [], [], 0
    try:
        for r in range(args.rounds):
            order, first, problems, secs = one_round(proctor, tmp, r, args.runs, args.iterations, args.gap)
            in_order = order == sorted(order)
            reordered += not in_order
            failures += ["round %d: %s" % (r, p) for p in problems]
            table.append([r, " ".join(map(str, order)), "yes" if in_order else "NO", "%.1f" % secs,
                          "ok" if not problems else "%d problems" % len(problems)])
            B.log("round %d: ran in order %s%s" % (r, order, "" if not problems else "; " + problems[0]))
        out = ["# proctor load: %d runs with --wait on one machine lock, %d iterations each, started %.1f s apart, %d rounds"
               % (args.runs, args.iterations, args.gap, args.rounds), ""]
        out += B.machine_lines(["binary:    %s" % proctor.bin])
        out += ["", "asked in the order 0 1 2 3; 'ran in' is the order of their spans (from runs.jsonl)", ""]
        out += B.table(["round", "ran in", "asking order", "seconds", "checks"], table)
        out += ["", "rounds out of the asking order: %d of %d" % (reordered, args.rounds),
                "failures: %d" % len(failures)]
        out += ["  " + f for f in failures[:30]]
        B.emit("load", out)
    finally:
        R.cleanup(tmp)
    sys.exit(1 if failures or (reordered and not args.allow_reorder) else 0)


if __name__ == "__main__":
    main()
