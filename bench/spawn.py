#!/usr/bin/env python3
"""Spawn /bin/true N times under: bare, bwrap (equivalent flags), `proctor exec` (full experiment
policy), and the launcher alone with the plan proctor gives it. Interleaved, medians, ratios.

Run through bench/spawn.sh (which installs what is missing and builds proctor), or directly with
PROCTOR_BIN=/path/to/proctor python3 bench/spawn.py [-n N] [--warmup W].
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

BWRAP_FLAGS = ["--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--die-with-parent", "--new-session"]

# The CONTRACT.md example, complete: every budget set, so the full experiment policy applies.
PROCTOR_TOML = B.FILES_TOML + """\

[experiment]
command  = ["python3", "train.py"]
timeout  = "5m"
cpu_time = "10m"
memory   = "4GiB"
pids     = 256
max_file_size = "256MiB"
max_output_bytes = "1GiB"
network  = false
env      = ["PATH", "HOME", "LANG"]
seeds    = [42]

[evaluator]
command   = ["python3", "prepare.py"]
timeout   = "2m"
metric    = "score"
direction = "maximize"

[limits]
diff_lines = 400

[gates]
min_improvement = 0.0005

[agent]
kind = "mutate"
"""

WRAPPER = """\
#!/bin/bash
# Logs the launcher's argv (NUL-separated) and runs the real launcher with it.
printf '%%s\\0' "$@" > %(log)s
exec %(real)s "$@"
"""


def drop(args, option, nvalues):
    """args without every `option` and its values (options only, before `--`)."""
    out, i = [], 0
    while i < len(args):
        if args[i] == "--":
            return out + args[i:]
        if args[i] == option:
            i += 1 + nvalues
            continue
        out.append(args[i])
        i += 1
    return out


def replace_value(args, option, value):
    return [value if i > 0 and args[i - 1] == option and "--" not in args[:i] else a for i, a in enumerate(args)]


# What each ablation removes from the launcher's plan.
ABLATIONS = [
    ("- audit (--audit-writes)", lambda a: drop(a, "--audit-writes", 0)),
    ("- cgroups (--memory --pids)", lambda a: drop(drop(a, "--memory", 1), "--pids", 1)),
    ("- output poll (--output-limit)", lambda a: drop(a, "--output-limit", 2)),
    ("- stdio pipes (--stdio-limit)", lambda a: drop(a, "--stdio-limit", 1)),
    ("- hides (--hide x%d)", lambda a: drop(a, "--hide", 1)),
    ("net none (no lo)", lambda a: replace_value(a, "--net", "none")),
    ("- all of the above", lambda a: replace_value(drop(drop(drop(drop(drop(drop(drop(
        a, "--audit-writes", 0), "--memory", 1), "--pids", 1), "--output-limit", 2), "--stdio-limit", 1),
        "--hide", 1), "--writable", 1), "--net", "none")),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=int(os.environ.get("SPAWN_N", "200")),
                    help="measured spawns per variant (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="interleaved warm-up rounds, discarded (default 20)")
    ap.add_argument("--ablate", action="store_true",
                    help="also time the launcher with one feature of the plan removed at a time (for the owners)")
    ap.add_argument("command", nargs="*", metavar="-- CMD ARG...",
                    help="what to spawn instead of /bin/true, after --, e.g. -- python3 -c pass")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.command = argv[cut + 1:] or ["/bin/true"]

    proctor = os.environ.get("PROCTOR_BIN") or os.path.join(B.REPO, ".build-static/release/proctor")
    launcher = os.environ.get("PROCTOR_SANDBOX_BIN") or os.path.join(os.path.dirname(proctor), "proctor-sandbox")
    for b in (proctor, launcher):
        if not os.access(b, os.X_OK):
            sys.exit("missing %s: build with `swift build -c release` or run bench/spawn.sh" % b)
    bwrap = shutil.which("bwrap")
    if not bwrap:
        sys.exit("bwrap missing: apt-get install -y bubblewrap (bench/spawn.sh does it)")

    command = list(args.command)
    if "/" not in command[0]:
        # Resolve once, to the real binary (not a pyenv shim), and give every variant that path.
        path = os.path.dirname(B.real_python()) + ":" + os.environ.get("PATH", os.defpath)
        found = shutil.which(command[0], path=path)
        if not found:
            sys.exit("%s not found" % command[0])
        command[0] = found
    shown = " ".join(args.command)

    tmp = tempfile.mkdtemp(prefix="proctor-bench-spawn-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    try:
        template, ws = os.path.join(tmp, "template"), os.path.join(tmp, "ws")
        B.make_template(template, PROCTOR_TOML)
        env = dict(os.environ)
        env["PROCTOR_MACHINE_LOCK"] = os.path.join(tmp, "machine.lock")
        init = subprocess.run([proctor, "init", ws, "--template", template], env=env, capture_output=True, text=True)
        if init.returncode != 0:
            sys.exit("proctor init failed:\n" + init.stdout + init.stderr)

        # Capture the launcher's argv: proctor runs $PROCTOR_SANDBOX with an empty environment.
        argv_log = os.path.join(tmp, "launcher.argv")
        wrapper = os.path.join(tmp, "launcher-wrapper.sh")
        with open(wrapper, "w") as f:
            f.write(WRAPPER % {"log": argv_log, "real": launcher})
        os.chmod(wrapper, 0o755)
        cap = subprocess.run([proctor, "exec", "--workspace", ws, "--"] + command,
                             env=dict(env, PROCTOR_SANDBOX=wrapper), capture_output=True, text=True)
        if cap.returncode != 0:
            sys.exit("proctor exec (capture) failed with %d:\n%s%s" % (cap.returncode, cap.stdout, cap.stderr))
        with open(argv_log, "rb") as f:
            plan = [a.decode() for a in f.read().split(b"\0")[:-1]]
        # Drop proctor's own fd options; we pass fresh ones (3: report to /dev/null, 4: death pipe).
        rest, i = [], 0
        while i < len(plan):
            if plan[i] in ("--report-fd", "--parent-fd"):
                i += 2
                continue
            rest.append(plan[i])
            i += 1

        devnull = os.open("/dev/null", os.O_WRONLY)
        death_r, death_w = os.pipe()  # we hold the write end for the whole run, as proctor does
        logs = {}

        def logfd(name):
            logs[name] = os.path.join(tmp, name.split()[0] + ".log")
            return os.open(logs[name], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        names = ["bare", "bwrap", "proctor exec", "launcher alone"]
        spawns = {
            "bare": B.Spawn("bare", command, env=env, cwd=ws),
            "bwrap": B.Spawn("bwrap", [bwrap] + BWRAP_FLAGS + command, env=env, cwd=ws),
            "proctor exec": B.Spawn("proctor exec", [proctor, "exec", "--workspace", ws, "--"] + command, env=env),
            "launcher alone": B.Spawn("launcher alone", [launcher, "--report-fd", "3", "--parent-fd", "4"] + rest,
                                      env={}, fds={3: devnull, 4: death_r}),
        }
        for n in names:
            fd = logfd(n)
            spawns[n].stdout = spawns[n].stderr = fd

        # One checked run each: all must succeed before anything is timed.
        for n in names:
            _, _, rc = spawns[n].run()
            if rc != 0:
                sys.exit("%s exited %d; output:\n%s" % (n, rc, open(logs[n]).read()))

        B.log("spawn: %d measured + %d warm-up rounds of %d variants, interleaved" % (args.runs, args.warmup, len(names)))
        failures = {n: 0 for n in names}

        def body(n):
            ms, cpu, rc = spawns[n].run()
            if rc != 0:
                failures[n] += 1
            return {"ms": ms, "cpu": cpu}

        samples = B.interleaved(names, args.runs, args.warmup, body)
        if any(failures.values()):
            sys.exit("non-zero exits during the run: %s" % failures)

        med = {n: B.median(samples[n]["ms"]) for n in names}
        rows = []
        for n in names:
            ms = samples[n]["ms"]
            rows.append([n, "%.2f" % med[n], "%.2f" % B.percentile(ms, 90), "%.2f" % min(ms),
                         "-" if n == "bwrap" else "%.2f" % B.median(samples[n]["cpu"]),
                         "%.2f" % (med[n] / med["bwrap"]), "%.1f" % (med[n] / med["bare"])])
        warn = sorted({line for n in names for line in open(logs[n]).read().splitlines() if line.strip()})
        out = ["# proctor spawn benchmark: %s, %d interleaved runs per variant (+%d warm-up rounds)"
               % (shown, args.runs, args.warmup), ""]
        out += B.machine_lines()
        out += ["", "time = wall clock from posix_spawn to wait4 in the timing process; cpu = user+sys of the",
                "spawned process and every descendant it reaped (wait4 rusage), median; bwrap's sandboxed",
                "processes are not charged to it that way (shown as -).", ""]
        out += B.table(["variant", "median ms", "p90 ms", "min ms", "cpu ms", "/ bwrap", "/ bare"], rows)
        out += ["",
                "variants:",
                "  bare            " + shown,
                "  bwrap           bwrap " + " ".join(BWRAP_FLAGS) + " " + shown,
                "  proctor exec    proctor exec --workspace WS -- %s   (CONTRACT example policy, all budgets)" % shown,
                "  launcher alone  proctor-sandbox with the argv proctor exec gave it (fd 3 -> /dev/null, fd 4 death pipe)",
                "",
                "proctor's own share (proctor exec - launcher alone): %.2f ms median" % (med["proctor exec"] - med["launcher alone"]),
                "proctor exec / bwrap median ratio (one-shot CLI: the Swift process start-up, policy, locks,"
                " audit record, then the same spawn): %.2f" % (med["proctor exec"] / med["bwrap"]),
                "spawn / bwrap median ratio (the launcher with the full experiment policy, as proctor run and"
                " proctor exec start every sandbox): %.2f" % (med["launcher alone"] / med["bwrap"])]
        if warn:
            out += ["", "stderr of the variants (deduplicated):"] + ["  " + w for w in warn[:10]]
        if args.ablate:
            out += ablate(spawns["launcher alone"], launcher, rest, devnull, death_r, med, args)
        out += ["", "launcher plan (%d arguments, fd options omitted):" % len(rest), "  " + " ".join(rest)]
        B.emit("spawn", out)
    finally:
        if os.environ.get("BENCH_KEEP"):
            B.log("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def ablate(full, launcher, rest, devnull, death_r, med, args):
    """The launcher with one feature removed at a time, interleaved with the full plan."""
    variants = {"launcher, full plan": full}
    hides = rest.count("--hide")
    for label, edit in ABLATIONS:
        label = label.replace("%d", str(hides))
        argv = [launcher, "--report-fd", "3", "--parent-fd", "4"] + edit(rest)
        variants[label] = B.Spawn(label, argv, env={}, fds={3: devnull, 4: death_r},
                                  stdout=full.stdout, stderr=full.stderr)
    for label, sp in variants.items():
        if sp.run()[2] != 0:
            sys.exit("ablation %r failed" % label)
    names = list(variants)
    runs = max(20, args.runs // 2)
    B.log("ablation: %d measured + %d warm-up rounds of %d launcher variants" % (runs, args.warmup, len(names)))
    samples = B.interleaved(names, runs, args.warmup, lambda n: dict(zip(("ms", "cpu"), variants[n].run()[:2])))
    base = B.median(samples[names[0]]["ms"])
    rows = [[n, "%.2f" % B.median(samples[n]["ms"]), "%.2f" % B.percentile(samples[n]["ms"], 90),
             "%.2f" % B.median(samples[n]["cpu"]), "%+.2f" % (B.median(samples[n]["ms"]) - base),
             "%.2f" % (B.median(samples[n]["ms"]) / med["bwrap"])] for n in names]
    return (["", "launcher ablation (%d interleaved runs each; what one feature of the plan costs):" % runs, ""]
            + B.table(["launcher variant", "median ms", "p90 ms", "cpu ms", "vs full", "/ bwrap"], rows))


if __name__ == "__main__":
    main()
