"""Driver of bench/memory.sh: runs the release build's opt-in memory measurement R times and reports
the per-iteration memory update at 1,000 ledger rows as a share of the loop's own overhead."""

import argparse
import os
import re
import statistics
import subprocess
import sys

from benchlib import REPO, emit, log, machine_lines

# README "Benchmarks": proctor run's overhead per iteration (loop.sh, 2026-11-25, 2 shared cores).
README_LOOP_OVERHEAD_MS = 15.4
LINE = re.compile(r"memory-bench: rows (\d+), iterations (\d+), update in memory .* median ([\d.]+) ms p90 ([\d.]+) ms; "
                  r"with files .* median ([\d.]+) ms p90 ([\d.]+) ms")


def one_round(iterations):
    env = dict(os.environ, PROCTOR_BENCH_MEMORY="1", PROCTOR_BENCH_ITERATIONS=str(iterations))
    out = subprocess.run(
        ["swift", "test", "-c", "release", "-Xswiftc", "-enable-testing", "--scratch-path",
         os.path.join(REPO, ".build-release"), "--skip-build", "--filter", "MemoryTests.testBenchmarkMemoryUpdate"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    match = LINE.search(out.stdout)
    if out.returncode != 0 or not match:
        sys.stderr.write(out.stdout[-4000:])
        sys.exit("bench: the measurement did not run (exit %d)" % out.returncode)
    rows, _, mem_med, mem_p90, files_med, files_p90 = match.groups()
    return int(rows), float(mem_med), float(mem_p90), float(files_med), float(files_p90)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", "--iterations", type=int, default=200, help="iterations measured per round, after 1,000 rows")
    parser.add_argument("--loop-overhead-ms", type=float, default=README_LOOP_OVERHEAD_MS,
                        help="the loop's overhead per iteration to compare with (bench/loop.sh; default: README's)")
    args = parser.parse_args()
    results = []
    for r in range(args.rounds):
        log("round %d/%d" % (r + 1, args.rounds))
        results.append(one_round(args.iterations))
    rows = results[0][0]
    mem = statistics.median(x[1] for x in results)
    files = statistics.median(x[3] for x in results)
    lines = machine_lines() + [""]
    lines.append("round  in-memory median ms  p90 ms  with files median ms  p90 ms")
    for i, (_, mem_med, mem_p90, files_med, files_p90) in enumerate(results):
        lines.append("%5d  %19.3f  %6.3f  %20.3f  %6.3f" % (i + 1, mem_med, mem_p90, files_med, files_p90))
    lines.append("")
    lines.append("memory update per iteration at %d ledger rows (median of round medians): %.3f ms in memory, "
                 "%.3f ms with the files written (budget: 5 ms)" % (rows, mem, files))
    lines.append("memory update / loop overhead (%.1f ms per iteration%s): %.3f in memory, %.3f with the files"
                 % (args.loop_overhead_ms, ", README" if args.loop_overhead_ms == README_LOOP_OVERHEAD_MS else "",
                    mem / args.loop_overhead_ms, files / args.loop_overhead_ms))
    emit("memory", lines)


if __name__ == "__main__":
    main()
