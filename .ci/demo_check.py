#!/usr/bin/env python3
"""The checks a finished demo run must pass, serial or `--parallel` (issue 13), from outside:
results.tsv and runs.jsonl whole and equal, each iteration of the run once (any order: a parallel
run records in completion order), every keep on the run's branch in ledger order and nothing else,
the tip the last keep, the working tree the tip, the locked files as pinned, no process left, the
locks free (bench/reliability.py's oracle); every audit line a whole JSON object of this run's
phases, and none a tamper.

Usage: python3 .ci/demo_check.py WORKSPACE ITERATIONS   (PROCTOR_BIN, PROCTOR_MACHINE_LOCK as the run's)
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import reliability as R  # noqa: E402


def main():
    ws, iterations = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    proctor = R.Proctor(os.path.dirname(ws))
    proctor.machine_lock = os.environ.get("PROCTOR_MACHINE_LOCK", "/tmp/proctor-machine.lock")
    pins = json.load(open(os.path.join(ws, ".proctor/state.json")))["pins"]
    locked = {path: open(os.path.join(ws, path), "rb").read() for path in pins}
    problems = R.check(proctor, ws, ws, locked, user_data=("holdout/", "sealed/"))
    _, records, _ = R.ledger(ws)
    run = (R.state(ws) or {}).get("run")
    mine = sorted(r.get("iteration") for r in records if r.get("run") == run)
    if mine != list(range(iterations + 1)):
        problems.append("run %s recorded iterations %s, not 0..%d" % (run, mine, iterations))
    for n, line in enumerate(open(os.path.join(ws, ".proctor/audit.jsonl")), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append("audit.jsonl line %d does not parse" % n)
            continue
        if entry.get("phase") not in ("agent", "experiment", "evaluator", "validate", "exec") or not entry.get("kind"):
            problems.append("audit.jsonl line %d: %s" % (n, line.strip()[:160]))
        if entry.get("kind") == "tamper":
            problems.append("audit.jsonl line %d: a tamper in the demo: %s" % (n, line.strip()[:160]))
    for p in problems:
        print("demo check: " + p)
    print("demo check: %s (%d iterations, %d audit lines)" % ("ok" if not problems else "FAILED", len(mine), n if records else 0))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
