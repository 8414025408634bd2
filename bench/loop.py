#!/usr/bin/env python3
"""Proctor's own overhead per iteration of the research loop, against an equivalent bash loop
(bench/bashloop.sh: git + timeout + bwrap, as published autoresearch scripts do it), on the same
tiny workspace whose experiment and evaluator do almost nothing, so what is measured is overhead.

Each round runs, in an order rotated every round: `proctor run --iterations N` on a fresh
workspace, `bashloop.sh` on a fresh copy, and the bare python work alone (python3 train.py +
python3 prepare.py, N+1 times: both loops also measure a baseline first). Per-iteration time =
total / N; overhead = per-iteration time - bare python per iteration.

Run through bench/loop.sh, or directly: PROCTOR_BIN=... python3 bench/loop.py [-n N] [--rounds R].
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

PROCTOR_TOML = B.FILES_TOML + B.PHASES_TOML + """\

[gates]
min_improvement = 0.001

[agent]
kind = "mutate"
"""

# Same code as the one-liner in bashloop.sh (measured alone for the breakdown).
PERTURB = """
import random, re
random.seed(42 * 100003 + %d)
s = open('train.py').read()
m = re.search(r'^X = ([0-9.eE+-]+)', s, re.M)
x = float(m.group(1))
y = '%%.4g' %% min(1.0, max(0.0, x + random.gauss(0, 0.15)))
open('train.py', 'w').write(s[:m.start(1)] + y + s[m.end(1):])
print('X %%s -> %%s' %% (m.group(1), y))"""

IGNORED = ["/outputs/", "/results.tsv", "/run.log"]


def git_workspace(template, ws, env):
    """The bash loop's workspace: the same files in a git repository with one commit."""
    shutil.copytree(template, ws)
    for argv in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "init"]):
        subprocess.run(argv, cwd=ws, env=env, check=True)
    with open(os.path.join(ws, ".git/info/exclude"), "a") as f:
        f.write("\n".join(IGNORED) + "\n")


def wall(argv, env, cwd=None, out=None):
    t0 = time.perf_counter()
    rc = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if out else None).returncode
    return time.perf_counter() - t0, rc


def statuses(tsv, col):
    counts = {}
    with open(tsv) as f:
        next(f)
        for line in f:
            fields = line.rstrip("\n").split("\t")
            counts[fields[col]] = counts.get(fields[col], 0) + 1
    return counts


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def diagnose(proctor, template, tmp, env, n):
    """One extra, untimed `proctor run` under strace (supervisor thread only, children untraced):
    time inside launcher processes (spawn to reap) versus the supervisor's own, and its fsyncs."""
    if not shutil.which("strace"):
        return ["", "(strace missing: no supervisor/launcher split)"]
    ws = os.path.join(tmp, "diagnose")
    subprocess.run([proctor, "init", ws, "--template", template], env=env, check=True, capture_output=True)
    trace = os.path.join(tmp, "diagnose.strace")
    secs, rc = wall(["strace", "-ttt", "-T", "-o", trace, "-e", "trace=clone,clone3,vfork,wait4,fsync,fdatasync",
                     proctor, "run", "--workspace", ws, "--iterations", str(n)], env, out=subprocess.DEVNULL)
    if rc != 0:
        return ["", "(diagnostic run under strace failed: %d)" % rc]
    spawned, in_launchers, launches, fsyncs, fsync_s = {}, 0.0, 0, 0, 0.0
    first = last = None
    for line in open(trace):
        parts = line.split(None, 1)
        if len(parts) < 2 or not parts[0][0].isdigit():
            continue
        t = float(parts[0])
        first = t if first is None else first
        last = t
        call, rest = parts[1].split("(", 1)[0], parts[1]
        ret = rest.rsplit("=", 1)[-1].split()[0] if "=" in rest else ""
        if call in ("clone", "clone3", "vfork") and ret.isdigit():
            spawned[int(ret)] = t
        elif call == "wait4":
            pid = int(ret) if ret.isdigit() else -1
            if pid in spawned:
                in_launchers += t - spawned.pop(pid)
                launches += 1
        elif call in ("fsync", "fdatasync"):
            fsyncs += 1
            if "<" in rest:
                fsync_s += float(rest.rsplit("<", 1)[1].split(">")[0])
    total = (last - first) if first is not None else secs
    per = lambda x: x / n * 1000  # noqa: E731
    return ["",
            "supervisor vs launchers (one extra run under strace -e clone3,wait4,fsync; strace slows the supervisor a",
            "little, the sandboxed children are not traced), per iteration, baseline and start-up included:",
            "  launcher processes, spawn to reap  %7.1f ms  (%.1f launches per iteration)" % (per(in_launchers), launches / n),
            "  proctor's own code                 %7.1f ms" % per(total - in_launchers),
            "  of which fsync                     %7.1f ms  (%.1f fsyncs per iteration)" % (per(fsync_s), fsyncs / n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--iterations", type=int, default=int(os.environ.get("LOOP_N", "30")),
                    help="iterations per loop (default 30)")
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds, discarded (default 1)")
    args = ap.parse_args()
    n = args.iterations

    proctor = os.environ.get("PROCTOR_BIN") or os.path.join(B.REPO, ".build-static/release/proctor")
    if not os.access(proctor, os.X_OK):
        sys.exit("missing %s: build with `swift build -c release` or run bench/loop.sh" % proctor)
    for tool in ("bwrap", "git", "timeout"):
        if not shutil.which(tool):
            sys.exit("%s missing (bench/loop.sh installs it)" % tool)

    # Every peer runs the same python binary (not a pyenv shim, which would add ~50 ms a call).
    python = B.real_python()
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(python) + ":" + env.get("PATH", os.defpath)
    env.update({"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})

    tmp = tempfile.mkdtemp(prefix="proctor-bench-loop-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    env["PROCTOR_MACHINE_LOCK"] = os.path.join(tmp, "machine.lock")
    try:
        template = os.path.join(tmp, "template")
        B.make_template(template, PROCTOR_TOML)
        counter = [0]
        proctor_runs = []  # (workspace, total seconds)
        bash_counts = []

        def fresh(kind):
            counter[0] += 1
            return os.path.join(tmp, "%s-%d" % (kind, counter[0]))

        def run_proctor():
            ws = fresh("proctor")
            init = subprocess.run([proctor, "init", ws, "--template", template], env=env, capture_output=True, text=True)
            if init.returncode != 0:
                sys.exit("proctor init failed:\n" + init.stdout + init.stderr)
            log = os.path.join(tmp, "proctor-run-%d.log" % counter[0])
            with open(log, "w") as out:
                secs, rc = wall([proctor, "run", "--workspace", ws, "--iterations", str(n)], env, out=out)
            rows = statuses(os.path.join(ws, ".proctor/results.tsv"), 3)
            if rc != 0 or sum(rows.values()) != n + 1:
                sys.exit("proctor run failed (%d, rows %s); log:\n%s" % (rc, rows, open(log).read()[-3000:]))
            proctor_runs.append((ws, secs, rows))
            return {"total": secs}

        def run_bash():
            ws = fresh("bash")
            git_workspace(template, ws, env)
            secs, rc = wall(["bash", os.path.join(B.HERE, "bashloop.sh"), ws, str(n)], env)
            rows = statuses(os.path.join(ws, "results.tsv"), 3)
            if rc != 0 or sum(rows.values()) != n + 1:
                sys.exit("bash loop failed (%d, rows %s)" % (rc, rows))
            bash_counts.append(rows)
            return {"total": secs}

        def run_bare():
            ws = fresh("bare")
            shutil.copytree(template, ws)
            os.mkdir(os.path.join(ws, "outputs"))
            devnull = os.open("/dev/null", os.O_WRONLY)
            train = B.Spawn("train", [python, "train.py"], env=env, cwd=ws, stdout=devnull)
            prep = B.Spawn("prepare", [python, "prepare.py"], env=env, cwd=ws, stdout=devnull)
            t0 = time.perf_counter()
            for _ in range(n + 1):
                if train.run()[2] != 0 or prep.run()[2] != 0:
                    sys.exit("bare python failed in " + ws)
            secs = time.perf_counter() - t0
            t1 = time.perf_counter()
            for i in range(1, n + 1):  # the bash loop's agent: one python process per iteration
                if B.Spawn("perturb", [python, "-c", PERTURB % i], env=env, cwd=ws, stdout=devnull).run()[2] != 0:
                    sys.exit("perturb one-liner failed in " + ws)
            perturb = time.perf_counter() - t1
            os.close(devnull)
            return {"total": secs, "perturb": perturb}

        runners = {"proctor run": run_proctor, "bash loop": run_bash, "bare python": run_bare}
        names = list(runners)
        B.log("loop: %d iterations, %d measured + %d warm-up rounds, interleaved" % (n, args.rounds, args.warmup))
        samples = B.interleaved(names, args.rounds, args.warmup, lambda v: runners[v]())

        per = {v: [t / n * 1000 for t in samples[v]["total"]] for v in names}
        med = {v: B.median(per[v]) for v in names}
        perturb = B.median([t / n * 1000 for t in samples["bare python"]["perturb"]])
        over_p = med["proctor run"] - med["bare python"]
        over_b = med["bash loop"] - med["bare python"]

        # Where proctor's time goes, from its own records (measured rounds only).
        kept_runs = proctor_runs[-args.rounds:]
        phase = {"iteration": [], "experiment": [], "evaluator": []}
        startup = []
        for ws, secs, _ in kept_runs:
            recs = [json.loads(line) for line in open(os.path.join(ws, ".proctor/runs.jsonl"))]
            times = [parse_time(r["time"]) for r in recs]
            for a, b, r in zip(times, times[1:], recs[1:]):
                phase["iteration"].append((b - a) * 1000)
                d = r.get("durations", {})
                phase["experiment"].append(d.get("experiment", 0) * 1000)
                phase["evaluator"].append(d.get("evaluator", 0) * 1000)
            startup.append(secs * 1000 - (times[-1] - times[0]) * 1000)
        pm = {k: B.median(v) for k, v in phase.items()}

        rows = []
        for v in names:
            rows.append([v, "%.1f" % med[v], "%.1f" % min(per[v]), "%.1f" % max(per[v]),
                         "%.1f" % (med[v] - med["bare python"]) if v != "bare python" else "-"])
        out = ["# proctor research-loop benchmark: %d iterations per loop, %d interleaved rounds (+%d warm-up)"
               % (n, args.rounds, args.warmup), ""]
        out += B.machine_lines()
        out += ["", "per iteration = wall time of the whole loop / %d (both loops also score a baseline first);" % n,
                "overhead = per iteration - bare python per iteration. Medians over the rounds.", ""]
        out += B.table(["loop", "ms/iter", "min", "max", "overhead ms/iter"], rows)
        out += ["",
                "proctor run:  proctor init WS --template T; proctor run --workspace WS --iterations %d" % n,
                "bash loop:    bench/bashloop.sh WS %d  (python perturb, git diff --stat/status, timeout 60 bwrap"
                " python3 train.py," % n,
                "              python3 prepare.py | tail | sed, git commit -am or git checkout -- . && git clean -fd,"
                " TSV line)",
                "bare python:  python3 train.py; python3 prepare.py  (%d times, spawned directly)" % (n + 1),
                "",
                "the bash loop's agent (one `python3 -c` perturb per iteration, included in its overhead): %.1f ms/iter"
                % perturb,
                "outcomes: proctor %s; bash loop %s (different random streams: keeps cost a commit)" % (
                    kept_runs[-1][2], bash_counts[-1]),
                "",
                "where proctor's time goes (median per iteration, from .proctor/runs.jsonl):",
                "  iteration, record to record      %7.1f ms" % pm["iteration"],
                "  experiment sandbox (launcher)    %7.1f ms" % pm["experiment"],
                "  evaluator sandbox (launcher)     %7.1f ms" % pm["evaluator"],
                "  outside the launchers            %7.1f ms  (agent, diff validation, git, locks, plan, ledger)"
                % (pm["iteration"] - pm["experiment"] - pm["evaluator"]),
                "  run start-up + baseline          %7.1f ms once per run (median)" % B.median(startup),
                "",
                "bash-loop overhead without its perturb process: %.1f ms/iter (proctor / that: %.2f)" % (
                    over_b - perturb, over_p / (over_b - perturb) if over_b - perturb > 0 else float("nan")),
                "proctor overhead / bash-loop overhead ratio: %.2f" % (over_p / over_b if over_b > 0 else float("nan"))]
        out += diagnose(proctor, template, tmp, env, n)
        B.emit("loop", out)
    finally:
        if os.environ.get("BENCH_KEEP"):
            B.log("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
