"""Shared helpers for Proctor's benchmarks (python3 standard library only).

Timing rules (see bench/README.md): every variant is measured in the same run, interleaved
(round r runs the variants in an order rotated by r, so A B C, B C A, C A B, ...), after a
warm-up that is thrown away; we report medians and p90 and ratios of medians.
"""

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# The tiny workspace both benchmarks use: the experiment and the evaluator do almost nothing, so
# what is measured is the supervisor's (or the peer's) own cost.
# The [files] section both benchmarks' workspaces use (the synthetic train.py/prepare.py below).
FILES_TOML = """\
[files]
editable = ["train.py"]
notes    = ["LOG.md"]
locked   = ["prepare.py"]
hidden   = ["holdout/**"]
outputs  = ["outputs/"]
"""

# The experiment and evaluator sections of the loop benchmark's and the fuzzer's workspaces.
PHASES = {
    "experiment": {"command": ["python3", "train.py"], "timeout": "20s", "seeds": [42]},
    "evaluator": {"command": ["python3", "prepare.py"], "metric": "score", "direction": "maximize"},
}


def toml_tables(tables):
    """TOML text of {table: {key: value}} (strings, numbers and lists of them: JSON spells those alike)."""
    return "".join("\n[%s]\n" % name + "".join("%s = %s\n" % (key, json.dumps(value)) for key, value in keys.items())
                   for name, keys in tables.items())


PHASES_TOML = toml_tables(PHASES)

TRAIN_PY = """\
import os

X = 0.2  # mutate: float 0.0..1.0 linear

out = os.environ.get("PROCTOR_OUTPUTS", "outputs")
with open(os.path.join(out, "pred.txt"), "w") as f:
    f.write(repr(X))
"""

PREPARE_PY = """\
import json

x = float(open("outputs/pred.txt").read())
target = float(open("holdout/target.txt").read())
print(json.dumps({"score": -(x - target) ** 2}))
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_text(argv, **kw):
    """stdout of argv, stripped; '' when it cannot run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


STARTED = (datetime.datetime.now(datetime.timezone.utc), os.getloadavg())


def machine_lines(extra=()):
    """What the numbers were measured on: machine, kernel, versions, when and under what load."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    osname = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "v1 (+ v2 unified)" if os.path.exists("/sys/fs/cgroup/unified") else "v1")
    commit = run_text(["git", "-C", REPO, "log", "-1", "--format=%h %cd", "--date=short"])
    dirty = run_text(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--", "Sources", "sandbox"])
    lines = [
        "date:      %s to %s" % (STARTED[0].strftime("%Y-%m-%d %H:%M:%S"),
                                   datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S UTC")),
        "machine:   %s, %d cores (os.cpu_count), %s RAM" % (cpu or platform.machine(), os.cpu_count() or 0, mem),
        "load avg:  %s at the start, %s at the end (1/5/15 min; other work on the machine skews absolute times)" % (
            " ".join("%.2f" % x for x in STARTED[1]), " ".join("%.2f" % x for x in os.getloadavg())),
        "kernel:    %s %s" % (platform.system(), platform.release()),
        "os:        %s; cgroup %s; running as uid %d" % (osname, cgroup, os.getuid()),
        "proctor:   %s%s" % (commit, " (+ uncommitted changes in Sources/ or sandbox/)" if dirty else ""),
        "python:    %s (%s)" % (platform.python_version(), sys.executable),
        "bwrap:     %s" % (run_text(["bwrap", "--version"]) or "missing"),
        "git:       %s" % run_text(["git", "--version"]),
        "swift:     %s" % (run_text(["swift", "--version"]).splitlines() or ["?"])[0],
    ]
    return lines + list(extra)


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def median(values):
    return statistics.median(values) if values else float("nan")


class Spawn:
    """One command to time: argv, env, extra fds (child fd -> parent fd), cwd."""

    def __init__(self, name, argv, env=None, fds=None, cwd=None, stdout=None, stderr=None):
        self.name = name
        self.argv = argv
        self.env = dict(os.environ) if env is None else env
        self.fds = fds or {}
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr
        self.path = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=self.env.get("PATH", os.defpath))
        if not self.path:
            raise SystemExit("%s: %s not found" % (name, argv[0]))

    def run(self):
        """(wall ms, cpu ms of the child and every descendant it reaped, exit status)."""
        actions = []
        if self.stdout is not None:
            actions.append((os.POSIX_SPAWN_DUP2, self.stdout, 1))
        if self.stderr is not None:
            actions.append((os.POSIX_SPAWN_DUP2, self.stderr, 2))
        for child, parent in self.fds.items():
            actions.append((os.POSIX_SPAWN_DUP2, parent, child))
        old = None
        if self.cwd:
            old = os.open(".", os.O_RDONLY)
            os.chdir(self.cwd)
        try:
            t0 = time.perf_counter_ns()
            pid = os.posix_spawn(self.path, self.argv, self.env, file_actions=actions)
            _, status, ru = os.wait4(pid, 0)
            t1 = time.perf_counter_ns()
        finally:
            if old is not None:
                os.fchdir(old)
                os.close(old)
        return (t1 - t0) / 1e6, (ru.ru_utime + ru.ru_stime) * 1000, os.waitstatus_to_exitcode(status)


def interleaved(variants, rounds, warmup, body):
    """Calls body(variant) -> dict of samples, `warmup` rounds discarded then `rounds` kept,
    the order rotated every round. Returns {name: {key: [values]}}."""
    samples = {v: {} for v in variants}
    total = warmup + rounds
    step = max(1, total // 10)
    for r in range(total):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        for v in order:
            got = body(v)
            if r >= warmup:
                for key, value in got.items():
                    samples[v].setdefault(key, []).append(value)
        if (r + 1) % step == 0 or r + 1 == total:
            log("  round %d/%d%s" % (r + 1, total, " (warm-up)" if r < warmup else ""))
    return samples


def table(header, rows):
    """Plain text table, right-aligned numbers."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def results_file(kind):
    """bench/results/KIND-<date>.txt (git-ignored); a second run the same day gets -HHMMSS."""
    d = os.path.join(HERE, "results")
    os.makedirs(d, exist_ok=True)
    now = datetime.datetime.now()
    path = os.path.join(d, "%s-%s.txt" % (kind, now.strftime("%Y-%m-%d")))
    if os.path.exists(path):
        path = os.path.join(d, "%s-%s.txt" % (kind, now.strftime("%Y-%m-%d-%H%M%S")))
    return path


def emit(kind, lines):
    """Prints the report and writes it under bench/results/."""
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    path = results_file(kind)
    with open(path, "w") as f:
        f.write(text)
    log("written: " + os.path.relpath(path, REPO))


def real_python():
    """The python3 that actually runs (not a pyenv/asdf shim script), so every peer runs the same binary."""
    exe = run_text(["python3", "-I", "-c", "import sys; print(sys.executable)"], cwd="/")
    return exe or shutil.which("python3")


def make_template(path, proctor_toml):
    """A template workspace for `proctor init --template`: the synthetic train.py and prepare.py."""
    os.makedirs(os.path.join(path, "holdout"))
    files = {"proctor.toml": proctor_toml, "train.py": TRAIN_PY, "prepare.py": PREPARE_PY,
             "LOG.md": "# notes\n", "holdout/target.txt": "0.8\n"}
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
