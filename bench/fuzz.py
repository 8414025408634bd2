#!/usr/bin/env python3
"""Bad input, fuzzed (issue 10): seeded malformed inputs for the three places Proctor reads input
it did not write, judged from outside.

  toml    mutants of the bundled workspace's proctor.toml, each checked by `proctor check` (and,
          when it loads, `proctor exec -- /bin/true`, which compiles the sandbox plan): a located
          error (exit 125 naming proctor.toml and a line or key) or a valid config (exit 0/1);
          nothing written in the workspace but .proctor/ and the outputs.
  answer  malformed HTTP-agent answers: the XCTest AgentTests.AnswerFuzzTests (the real reply
          parser and applier on a temporary workspace) for the N cases, plus a sample through
          the real loop, `proctor run` against a local server answering them: every iteration a
          rejected answer or a valid change, the run goes on, locked files and the tree intact,
          `proctor report` still renders.
  argv    random argument vectors for proctor-sandbox (mutations of the plan `proctor exec`
          gives it, random tokens, missing values, huge numbers, unknown options): exit 125 with
          a `proctor-sandbox:` message, or a legitimate run; never a signal, never a hang.

A crash is a signal death, a Swift fatal error or trap, or an exit status outside the allowed
set; a hang is a case past its timeout. Run through bench/fuzz.sh, or directly:
PROCTOR_BIN=... python3 bench/fuzz.py [--seed S] [-n N] [--class toml|answer|argv|all].
"""

import argparse
import fcntl
import hashlib
import http.server
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

TRAP = re.compile(r"Fatal error|fatal error:|Illegal instruction|Segmentation fault|Crash|Backtrace|Aborted")


class Tally:
    """Counts of one class and the first failures, each with what reproduces it."""

    COLUMNS = ["cases", "located errors", "accepted", "rejected", "crashes", "hangs", "writes", "unlocated"]

    def __init__(self, name):
        self.name = name
        self.counts = {c: 0 for c in self.COLUMNS}
        self.failures = []
        self.seconds = 0.0

    def add(self, outcome, detail=None):
        self.counts["cases"] += 1
        self.counts[outcome] += 1
        if outcome in ("crashes", "hangs", "writes", "unlocated") and detail:
            self.failures.append(detail)

    def bad(self):
        return sum(self.counts[c] for c in ("crashes", "hangs", "writes", "unlocated"))


def crash_text(out):
    """The lines that say what crashed (Swift's fatal error, an assertion, the top frames), else the tail."""
    lines = [l.strip() for l in out.splitlines() if re.search(r"Fatal error|Assertion|crashed|terminate| at /", l)]
    return " | ".join(lines[:6])[:800] if lines else out.strip()[-400:]


def run(argv, timeout, **kw):
    """(returncode or None on timeout, stdout+stderr text)."""
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, **kw)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return None, ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "replace")


def tree(root, skip=(".proctor", "outputs")):
    """{relative path: (kind, mode, sha256 of contents or link text)} of everything under root."""
    out = {}
    for d, dirs, files in os.walk(root):
        rel_d = os.path.relpath(d, root)
        if rel_d == ".":
            dirs[:] = [x for x in dirs if x not in skip]
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rel = os.path.normpath(os.path.join(rel_d, name))
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_mode, hashlib.sha256(f.read()).hexdigest())
    return out


def diff(before, after):
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


# ---------------------------------------------------------------------------------------- toml

TOML_VALUES = [
    '"60s"', '60', '-1', '0', '9223372036854775807', '-9223372036854775808', '99999999999999999999999',
    '1e309', 'inf', 'nan', '-inf', '3.5', 'true', '"true"', '[]', '[1, "a"]', '{}', '{ a = 1 }', '1979-05-27',
    '"60"', '"60x"', '"-1s"', '"99999999999999999999h"', '"153722867280912931h"', '"1e3s"', '"６０s"', '"60 s"',
    '""', '"0s"', '"0B"', '"8EiB"', '"9999999999TiB"', '"4GiB"', '"\\u0000"', '"\\u001b[2J"', '"\\u202e"',
    '"\\ud800"', '"' + "x" * 70000 + '"', '["../escape"]', '["/etc/passwd"]', '["**"]', '["**/../.."]',
    '[".git/**"]', '[".proctor/**"]', '["proctor.toml"]', '["{a,b}"]', '["["]', '["a\\u0000b"]', '[""]',
    '["."]', '["/"]', '["~/x"]', '["train.py", "train.py"]', '["outputs/"]', '["data/**"]', '["*"]',
    '["' + "a/" * 3000 + 'b"]', '[' + ", ".join(['"f%d.py"' % i for i in range(400)]) + ']',
    '["python3", "-c", "import os; os.system(\'touch /tmp/pwned\')"]', '[[[[[]]]]]', '"minimize"', '"sideways"',
    '"http"', '"command"', '"nonsense"', '["PATH", "LD_PRELOAD"]', '["{site-packages}/../../.."]',
]
TOML_LINES = [
    "[files]", "[experiment]", "[evaluator]", "[agent]", "[[phases]]", "[sandbox]", "[agent.home_files]",
    "[nonsense]", "unknown_key = 1", "[files.editable]", "[experiment.command]", "= 1", "key =", "[", "]]",
    "[a.b.c.d.e.f.g.h.i.j]", "'''", '"""', "x = '''unterminated", "[files]\neditable = [\"LOG.md\"]",
    "[agent]\nkind = \"http\"\nbase_url = \"file:///etc/passwd\"\nmodel = \"m\"",
    "[agent.home_files]\n\"/etc/shadow\" = \"../../x\"", "[agent.home_files]\n\"relative\" = \"/abs\"",
    "[[phases]]\nafter = -1", "[[phases]]\nname = 1", "\ufeff", "\x00", "\x1b[2J", "\u202e", "\udcff",
]


def pick(r, indices, fallback):
    return r.choice(indices) if indices else fallback


def mutate_toml(text, r):
    lines = text.split("\n")
    kind = r.randrange(14)
    at = r.randrange(len(lines))
    if kind == 0:  # a value of another type, unit or size
        i = pick(r, [i for i, l in enumerate(lines) if re.match(r"^\s*[A-Za-z_\"][^=]*=", l)], at)
        lines[i] = lines[i].split("=", 1)[0] + "= " + r.choice(TOML_VALUES)
    elif kind == 1:  # a line inserted: headers, keys, junk
        lines.insert(at, r.choice(TOML_LINES))
    elif kind == 2:
        del lines[at]
    elif kind == 3:  # a table or a key twice
        lines.insert(at, lines[r.randrange(len(lines))])
    elif kind == 4:  # deep tables and arrays
        depth = r.choice([50, 500, 5000, 100000])
        lines.insert(at, r.choice([
            "[" + ".".join("t" * r.randrange(1, 3) for _ in range(min(depth, 2000))) + "]",
            "deep = " + "[" * depth + "]" * depth,
            "deep = " + "{ a = " * depth + "1" + " }" * depth,
            "deep = " + "[" * depth,
        ]))
    elif kind == 5:  # control characters and odd unicode in a random place
        junk = r.choice(["\x00", "\x01", "\x7f", "\x1b[31m", "\r", "\u2028", "\ufeff", "\u202e", "💥", "\ud800", "\t"])
        pos = r.randrange(len(lines[at]) + 1)
        lines[at] = lines[at][:pos] + junk + lines[at][pos:]
    elif kind == 6:  # cut short
        return text[: r.randrange(len(text) + 1)]
    elif kind == 7:  # a random byte flip (the file may stop being UTF-8)
        data = bytearray(text.encode("utf-8", "surrogatepass"))
        if not data:
            return b"\xff"
        data[r.randrange(len(data))] = r.randrange(256)
        return bytes(data)
    elif kind == 8:  # a glob list that escapes or covers what it must not
        i = pick(r, [i for i, l in enumerate(lines) if re.match(r"^(editable|notes|locked|hidden|sealed|outputs|hide)\s*=", l)], at)
        lines[i] = lines[i].split("=", 1)[0] + "= " + r.choice([v for v in TOML_VALUES if v.startswith("[")])
    elif kind == 9:  # a number far out of range, or a unit on a number
        i = pick(r, [i for i, l in enumerate(lines) if re.match(r"^\s*\w+\s*=\s*[\"\[]?[0-9]", l)], at)
        lines[i] = lines[i].split("=", 1)[0] + "= " + r.choice(
            ['99999999999999999999', '-5', '0', '"%ds"' % r.randrange(1 << 62), '%d' % (1 << 63), '1.0e400', '"5 parsecs"'])
    elif kind == 10:  # a key renamed to a near miss or to junk
        i = pick(r, [i for i, l in enumerate(lines) if "=" in l and not l.startswith("#")], at)
        k, v = (lines[i] + "=").split("=", 1)
        lines[i] = r.choice([k.strip() + "s", k.strip().upper(), '"' + k.strip() + '\\u0000"', "ké" + k.strip()]) + " =" + v
    elif kind == 11:  # many lines
        lines += [r.choice(TOML_LINES) for _ in range(r.randrange(1, 200))]
    elif kind == 12:  # a header mangled
        i = pick(r, [i for i, l in enumerate(lines) if l.startswith("[")], at)
        lines[i] = r.choice(["[" + lines[i], lines[i][:-1], lines[i] + "]", "[[" + lines[i][1:-1] + "]]", lines[i].upper(), "[ files ]", "[\"files\"]"])
    else:  # the empty file or whitespace
        return r.choice(["", "\n", "   ", "# only a comment\n"])
    return "\n".join(lines)


def toml_case(r, base):
    out = base
    for _ in range(r.choice([1, 1, 2, 3])):
        if isinstance(out, bytes):
            break
        out = mutate_toml(out, r)
    return out if isinstance(out, bytes) else out.encode("utf-8", "surrogatepass")


def fuzz_toml(args, proctor, tally, tmp):
    env = dict(os.environ, PROCTOR_MACHINE_LOCK=os.path.join(tmp, "machine.lock"))
    ws = os.path.join(tmp, "ws")
    rc, out = run([proctor, "init", ws], 300, env=env)
    if rc != 0:
        sys.exit("proctor init failed (%s):\n%s" % (rc, out))
    toml = os.path.join(ws, "proctor.toml")
    with open(toml, "rb") as f:
        base = f.read()
    pristine = tree(ws)
    outside_marker = os.path.join(tmp, "outside.txt")
    with open(outside_marker, "w") as f:
        f.write("outside\n")
    r = random.Random(args.seed)
    for index in range(args.n):
        mutant = toml_case(r, base.decode())
        with open(toml, "wb") as f:
            f.write(mutant)
        where = "toml case %d (--seed %d); mutant kept in %s" % (index, args.seed, "FILE")
        rc, out = run([proctor, "check", "--workspace", ws], args.timeout, env=env)
        outcome, detail = judge_toml(rc, out)
        if outcome == "accepted":
            # It loads: compile the sandbox plan too and start one.
            rc2, out2 = run([proctor, "exec", "--workspace", ws, "--", "/bin/true"], args.timeout, env=env)
            outcome, detail = judge_toml(rc2, out2, exec_=True)
        after = tree(ws)
        # A valid mutant's own outputs are proctor's to make (`proctor exec` creates them).
        made = outputs_of(mutant) if outcome == "accepted" else set()
        raw = [p for p in diff(pristine, after) if p != "proctor.toml"]
        changed = [p for p in raw if p.split("/")[0] not in made]
        if outcome in ("accepted", "located errors") and changed:
            outcome, detail = "writes", "wrote %s" % changed[:5]
        if not os.path.exists(outside_marker):
            outcome, detail = "writes", "outside.txt vanished"
        if outcome in ("crashes", "hangs", "writes", "unlocated"):
            keep = os.path.join(tmp, "failed-toml-%d.toml" % index)
            with open(keep, "wb") as f:
                f.write(mutant)
            tally.add(outcome, where.replace("FILE", keep) + ": " + detail)
        else:
            tally.add(outcome)
        if raw:  # back to the pristine workspace for the next case
            shutil.rmtree(ws)
            run([proctor, "init", ws], 300, env=env)
            pristine = tree(ws)
        progress(tally, args.n)
    with open(toml, "wb") as f:
        f.write(base)


# `proctor: /ws/proctor.toml:12: experiment.timeout: expected ...` or, for a key whose line is not
# known, `proctor.toml: experiment.timeout: ...`.
LOCATED = re.compile(r"proctor\.toml:\d+: |proctor\.toml: [^\s:]+: ")


def outputs_of(mutant):
    """The first components of [files] outputs as Python's TOML reader reads them (empty if it cannot)."""
    try:
        outputs = tomllib.loads(mutant.decode()).get("files", {}).get("outputs", ["outputs"])
        return {str(o).strip("/").split("/")[0] for o in outputs}
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return set()


def judge_toml(rc, out, exec_=False):
    if rc is None:
        return "hangs", "no exit within the timeout"
    if rc < 0 or TRAP.search(out):
        return "crashes", "exit %s: %s" % (rc, crash_text(out))
    if rc == 125:
        # proctor.toml:LINE: or proctor.toml: KEY: (a key without a line), or the policy preset named from it.
        if LOCATED.search(out):
            return "located errors", None
        return "unlocated", "exit 125 without naming proctor.toml: %s" % out.strip()[-300:]
    if rc in ((0, 1) if not exec_ else (0,)):
        return "accepted", None
    return "crashes", "exit %d not in the allowed set: %s" % (rc, out.strip()[-300:])


# ---------------------------------------------------------------------------------------- argv

WRAPPER = """#!/bin/sh
printf '%%s\\0' "$@" > %(log)s
exec %(real)s "$@"
"""

OPTIONS = ["--timeout", "--grace", "--cpu", "--memory", "--pids", "--fsize", "--nofile", "--output-entries",
           "--stdio-limit", "--ro", "--ro-try", "--rw", "--hide", "--dev", "--proc", "--hide-sockets", "--symlink",
           "--tmpfs", "--dev-node", "--chdir", "--setenv", "--net", "--output-limit", "--audit-writes", "--filter-cache",
           "--writable", "--report-fd", "--parent-fd", "--pass-fd", "--proxy-port", "--allow-host", "--allow-private",
           "--proxy-hosts", "--", "--help", "-h", "--version", "-", ""]
NUMBERS = ["0", "1", "-1", "3", "4", "1K", "1KiB", "2M", "3GB", "1T", "1P", "9223372036854775807",
           "9223372036854775808", "18446744073709551615", "99999999999999999999999", "0x10", "1e3", " 5", "5 ",
           "+5", "00000000000000000000001", "8796093022208T", "9007199254740993K", "2147483648", "65535"]
NUMERIC_OPTIONS = {"--timeout", "--grace", "--cpu", "--memory", "--pids", "--fsize", "--nofile", "--output-entries",
                   "--stdio-limit", "--tmpfs", "--output-limit", "--proxy-port"}
COMMANDS = [["/bin/true"], ["/bin/false"], ["/bin/sh", "-c", "exit 3"], ["/nonexistent"], ["/"], [""],
            ["relative-command"], ["/bin/true", "\x01\x7f"], ["/dev/null"]]


def argv_case(r, plan, tmp):
    """A mutated launcher argv (options only; the command after `--` is chosen from COMMANDS)."""
    paths = ["/", tmp, tmp + "/ws", tmp + "/ws/outputs", tmp + "/nope", tmp + "/../etc", tmp + "/./x", "relative",
             "", "/proc/self/fd/3", tmp + "/" + "d" * 5000, "/" + "a/" * 2100, tmp + "/ws/train.py", tmp + "//ws//"]
    cut = plan.index("--") if "--" in plan else len(plan)
    a = list(plan[:cut])
    command = list(plan[cut + 1:]) or ["/bin/true"]
    if r.randrange(10) < 4:
        # Structure kept, values changed: huge, zero or suffixed numbers, other networks, odd
        # environment values, another command. These mostly launch, so the sandbox itself runs.
        numeric = [i + 1 for i, x in enumerate(a[:-1]) if x in NUMERIC_OPTIONS]
        for _ in range(r.choice([1, 2, 3])):
            kind = r.randrange(4)
            if kind == 0 and numeric:
                a[r.choice(numeric)] = r.choice(NUMBERS)
            elif kind == 1:
                a += r.choice([["--net", r.choice(["none", "loopback", "host", "allowlist"])],
                               ["--net", "allowlist", "--proxy-port", "3128", "--allow-host", "*.fuzz.test"]])
            elif kind == 2:
                a += ["--setenv", "FUZZ", bytes(r.randrange(1, 256) for _ in range(r.randrange(0, 200))).decode("latin-1")]
            else:
                command = r.choice(COMMANDS)
        return a + ["--"] + command
    for _ in range(r.choice([1, 1, 2, 3, 5, 10])):
        kind = r.randrange(12)
        at = r.randrange(len(a) + 1)
        if kind == 0 and a:
            del a[r.randrange(len(a))]  # drops an option or its value: values shift into options
        elif kind == 1:
            a.insert(at, r.choice(OPTIONS))
        elif kind == 2 and a:
            a[r.randrange(len(a))] = r.choice(NUMBERS)
        elif kind == 3 and a:
            a[r.randrange(len(a))] = r.choice(paths)
        elif kind == 4:
            opt = r.choice(OPTIONS)
            a[at:at] = [opt] + [r.choice(NUMBERS + paths) for _ in range(r.randrange(3))]
        elif kind == 5:  # random NUL-free bytes
            a.insert(at, bytes(r.randrange(1, 256) for _ in range(r.randrange(1, 40))).decode("latin-1"))
        elif kind == 6:  # options cut off at the end (a missing value)
            a = a[: r.randrange(len(a) + 1)] + [r.choice(OPTIONS)]
        elif kind == 7:  # many of one option
            opt = r.choice(["--hide", "--setenv", "--writable", "--ro", "--tmpfs", "--symlink", "--allow-host"])
            n = r.choice([300, 1000, 5000])
            extra = {"--hide": lambda i: [opt, "/tmp/h%d" % i], "--setenv": lambda i: [opt, "V%d" % i, "x"],
                     "--writable": lambda i: [opt, tmp + "/w%d" % i], "--ro": lambda i: [opt, "/usr", "/usr"],
                     "--tmpfs": lambda i: [opt, "/t%d" % i, "1M"], "--symlink": lambda i: [opt, "x", "/l%d" % i],
                     "--allow-host": lambda i: [opt, "h%d.test" % i]}[opt]
            for i in range(n):
                a += extra(i)
        elif kind == 8:  # the command replaced
            command = r.choice(COMMANDS)
        elif kind == 9:  # no `--` at all
            return a + command
        elif kind == 10 and a:  # two options swapped
            i, j = r.randrange(len(a)), r.randrange(len(a))
            a[i], a[j] = a[j], a[i]
        else:  # a huge value
            a.insert(at, r.choice(["--setenv", "--chdir", "--hide"]))
            a.insert(at + 1, "/" + "x" * r.choice([4096, 70000]))
    return a + ["--"] + command


def fuzz_argv(args, proctor, launcher, tally, tmp):
    env = dict(os.environ, PROCTOR_MACHINE_LOCK=os.path.join(tmp, "machine.lock"))
    template, ws = os.path.join(tmp, "template"), os.path.join(tmp, "ws")
    B.make_template(template, B.FILES_TOML + ARGV_TOML)
    rc, out = run([proctor, "init", ws, "--template", template], 300, env=env)
    if rc != 0:
        sys.exit("proctor init failed (%s):\n%s" % (rc, out))
    argv_log, wrapper = os.path.join(tmp, "launcher.argv"), os.path.join(tmp, "wrapper.sh")
    with open(wrapper, "w") as f:
        f.write(WRAPPER % {"log": argv_log, "real": launcher})
    os.chmod(wrapper, 0o755)
    rc, out = run([proctor, "exec", "--workspace", ws, "--", "/bin/true"], 120, env=dict(env, PROCTOR_SANDBOX=wrapper))
    if rc != 0:
        sys.exit("proctor exec (capture) failed (%s):\n%s" % (rc, out))
    with open(argv_log, "rb") as f:
        plan = [x.decode() for x in f.read().split(b"\0")[:-1]]
    fixed = []
    i = 0
    while i < len(plan):  # proctor's own descriptors are replaced by ours (3: report, 4: death pipe)
        if plan[i] in ("--report-fd", "--parent-fd", "--pass-fd") and "--" not in plan[:i]:
            i += 2
            continue
        fixed.append(plan[i])
        i += 1
    # The harness itself: the plan as proctor gave it must run (else every mutant "fails" for nothing).
    death_r, death_w = os.pipe()
    r0 = subprocess.run([launcher, "--report-fd", "3", "--parent-fd", "4"] + fixed, capture_output=True, env={}, cwd=tmp,
                        close_fds=False, preexec_fn=fds_3_4(os.open(os.devnull, os.O_WRONLY), death_r))
    os.close(death_r)
    os.close(death_w)
    if r0.returncode != 0:
        sys.exit("the launcher plan as captured exits %d: %s" % (r0.returncode, r0.stderr.decode(errors="replace")))
    pristine = tree(ws, skip=(".proctor", "outputs", ".git"))
    outside = tree(tmp, skip=("ws", "scratch"))
    scratch = os.path.join(tmp, "scratch")
    os.makedirs(scratch, exist_ok=True)
    report = os.path.join(tmp, "scratch", "report")
    r = random.Random(args.seed)
    for index in range(args.n):
        a = argv_case(r, fixed, tmp)
        full = [launcher, "--report-fd", "3", "--parent-fd", "4"] + a if r.randrange(10) else [launcher] + a
        death_r, death_w = os.pipe()
        rep = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # close_fds=False: the launcher closes everything but 0-2 and its own descriptors itself.
            p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={},
                                 cwd=scratch, close_fds=False, preexec_fn=fds_3_4(rep, death_r))
            try:
                o, e = p.communicate(timeout=args.timeout)
                rc, text = p.returncode, (o + e).decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                rc, text = None, ""
        finally:
            os.close(death_w)
            os.close(death_r)
            os.close(rep)
        outcome, detail = judge_argv(rc, text)
        # The launcher's cache (compiled filters, the socket scan's listings) goes where --filter-cache
        # says, even a mutated one: the launcher's to write.
        changed = [p for p in diff(pristine, tree(ws, skip=(".proctor", "outputs", ".git"))) + diff(outside, tree(tmp, skip=("ws", "scratch")))
                   if not re.search(r"(^|/)(seccomp-[0-9a-f]+\.bpf|sockets\.scan)$", p)]
        if changed and outcome not in ("crashes", "hangs"):
            outcome, detail = "writes", "wrote %s" % changed[:5]
        if detail:
            tally.add(outcome, "argv case %d (--seed %d): %s\n    argv: %s" % (index, args.seed, detail, json.dumps(full)[:2000]))
            if changed:
                pristine = tree(ws, skip=(".proctor", "outputs", ".git"))
                outside = tree(tmp, skip=("ws", "scratch"))
        else:
            tally.add(outcome)
        progress(tally, args.n)


ARGV_TOML = """
[experiment]
command  = ["python3", "train.py"]
timeout  = "20s"
cpu_time = "20s"
memory   = "512MiB"
pids     = 64
max_file_size = "64MiB"
max_output_bytes = "64MiB"
seeds    = [42]

[evaluator]
command   = ["python3", "prepare.py"]
metric    = "score"
"""


def fds_3_4(report, death):
    """In the child before exec: fd 3 the report file, fd 4 the death pipe's read end."""
    def setup():
        # Moved up first: either may already sit at 3 or 4, and dup2 onto itself keeps CLOEXEC.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (report, death)]
        for target, fd in zip((3, 4), high):
            os.dup2(fd, target)
            os.set_inheritable(target, True)
    return setup


def judge_argv(rc, text):
    if rc is None:
        return "hangs", "no exit within the timeout"
    if rc < 0:
        return "crashes", "killed by signal %d: %s" % (-rc, crash_text(text))
    if TRAP.search(text) and "proctor-sandbox:" not in text:
        return "crashes", "exit %d: %s" % (rc, crash_text(text))
    if rc == 125:
        if "proctor-sandbox:" in text:
            return "located errors", None
        return "unlocated", "exit 125 without a proctor-sandbox: message: %r" % text[-300:]
    # A legitimate run: the command's status (0, 1, 3 from the pool), the deadline (124), not
    # executable (126), not found (127), or killed by a limit the mutant set (128+N).
    if rc in (0, 1, 3, 124, 126, 127) or 129 <= rc <= 128 + 64:
        return "accepted", None
    return "crashes", "exit %d not in the allowed set: %s" % (rc, text.strip()[-300:])


# -------------------------------------------------------------------------------------- answer

LOOP_TOML = B.PHASES_TOML + """
[agent]
kind     = "http"
protocol = "openai"
base_url = "http://127.0.0.1:%d/v1"
model    = "fuzz"
timeout  = "30s"
retries  = 0
price_per_mtok_in = 1.0
"""


def loop_answer(r):
    """(HTTP status, body bytes) of one malformed or valid chat-completions answer."""
    good_file = "SUMMARY: set X\nFILE: train.py\n```python\n" + B.TRAIN_PY.replace("0.2", "%.3f" % r.random()) + "```\n"
    good_diff = ("SUMMARY: move X\n```diff\n--- a/train.py\n+++ b/train.py\n@@ -3 +3 @@\n-X = 0.2  # mutate: float 0.0..1.0 linear\n"
                 "+X = %.3f  # mutate: float 0.0..1.0 linear\n```\n" % r.random())
    text = r.choice([good_file, good_diff])
    kind = r.randrange(12)
    if kind == 0:
        text = text.replace("train.py", r.choice(["../outside.txt", "/etc/passwd", "prepare.py", ".git/config", "train.py\x00",
                                                "holdout/target.txt", "proctor.toml", ".proctor/state.json", "outputs/pred.txt"]))
    elif kind == 1:
        text = text.replace("@@ -3 +3 @@", r.choice(["@@ - @@", "@@ -99999999999999999999 +1 @@", "@@", "@@ -3,x +3 @@"]))
    elif kind == 2:
        text = text[: r.randrange(len(text))]
    elif kind == 3:
        text = "FILE: train.py\n```\n" + "\x00\x01\xff" * r.randrange(1, 3000) + "\n```\n"
    elif kind == 4:
        text = "FILE: train.py\n```\n" + ("x = 1\n" * r.choice([1000, 100000])) + "```\n"
    elif kind == 5:
        return 200, json.dumps({"choices": [{"message": {"content": 5}}]}).encode()
    elif kind == 6:
        return 200, r.choice([b"not json", b"[]", b"{", b"[" * 100000, b"\xff\xfe", b"{}", b'{"choices": null}'])
    elif kind == 7:
        usage = {"prompt_tokens": r.choice([2 ** 63 - 1, -1, 10]), "completion_tokens": 2 ** 63 - 1}
        return 200, json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": usage}).encode()
    elif kind == 8:
        text = text.replace("--- a/train.py", "--- a/train.py\ndeleted file mode 100644")
    elif kind == 9:
        text = text + "\nFILE: LOG.md\n```\n" + "\u202e\x1b[2J notes\n```\n"
    elif kind == 10:
        text = ""
    return 200, json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 20}}).encode()


def fuzz_answer_loop(args, proctor, tally, tmp):
    """`proctor run --agent http` against a local server that answers with loop_answer()."""
    r = random.Random(args.seed)
    answers = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, body = loop_answer(r)
            answers.append(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, PROCTOR_MACHINE_LOCK=os.path.join(tmp, "machine.lock"))
    template, ws = os.path.join(tmp, "loop-template"), os.path.join(tmp, "loop", "ws")
    os.makedirs(os.path.dirname(ws))
    with open(os.path.join(tmp, "loop", "outside.txt"), "w") as f:
        f.write("outside\n")
    B.make_template(template, B.FILES_TOML + LOOP_TOML % server.server_address[1])
    rc, out = run([proctor, "init", ws, "--template", template], 300, env=env)
    if rc != 0:
        sys.exit("proctor init failed (%s):\n%s" % (rc, out))
    before = tree(os.path.dirname(ws), skip=())
    start = time.time()
    rc, out = run([proctor, "run", "--workspace", ws, "--iterations", str(args.loop_cases)], args.timeout * args.loop_cases, env=env)
    server.shutdown()
    rows = []
    try:
        with open(os.path.join(ws, ".proctor", "results.tsv")) as f:
            head = f.readline().rstrip("\n").split("\t")
            rows = [dict(zip(head, l.rstrip("\n").split("\t"))) for l in f]
    except OSError:
        pass
    statuses = [row.get("status") for row in rows if row.get("iteration") not in ("0", None)]
    if rc is None:
        tally.loop_failures.append("proctor run hung (%.0f s)" % (time.time() - start))
    elif rc != 0 or TRAP.search(out):
        tally.loop_failures.append("proctor run exit %s: %s" % (rc, crash_text(out)))
    if len(statuses) != args.loop_cases:
        tally.loop_failures.append("%d ledger rows for %d iterations" % (len(statuses), args.loop_cases))
    unexpected = [s for s in statuses if s not in ("rejected", "keep", "discard")]
    if unexpected:
        tally.loop_failures.append("unexpected statuses %s" % sorted(set(unexpected)))
    # Only train.py and LOG.md (and .proctor, .git, outputs) may differ; proctor check: tree and pins ok.
    after = tree(os.path.dirname(ws), skip=())
    changed = [p for p in diff(before, after) if not re.match(r"ws/(\.proctor|\.git|outputs)(/|$)", p)
               and p not in ("ws/train.py", "ws/LOG.md")]
    if changed:
        tally.loop_failures.append("wrote %s" % changed[:5])
    rc2, out2 = run([proctor, "check", "--workspace", ws], 120, env=env)
    if rc2 != 0:
        tally.loop_failures.append("proctor check after the run: exit %s: %s" % (rc2, out2[-300:]))
    rc3, out3 = run([proctor, "report", "--workspace", ws, "--out", os.path.join(tmp, "report.html")], 120, env=env)
    if rc3 != 0 or TRAP.search(out3):
        tally.loop_failures.append("proctor report: exit %s: %s" % (rc3, crash_text(out3)))
    tally.loop = {s: statuses.count(s) for s in sorted(set(statuses))}
    tally.loop_seconds = time.time() - start


def fuzz_answer(args, proctor, tally, tmp):
    xctest = os.environ.get("PROCTOR_XCTEST") or os.path.join(os.path.dirname(proctor), "ProctorPackageTests.xctest")
    if not os.access(xctest, os.X_OK):
        sys.exit("missing %s: build with `swift build --build-tests`, or set PROCTOR_XCTEST" % xctest)
    summary, progress_file = os.path.join(tmp, "answer-summary.json"), os.path.join(tmp, "answer-progress")
    env = dict(os.environ, PROCTOR_FUZZ_CASES=str(args.n), PROCTOR_FUZZ_SEED=str(args.seed),
               PROCTOR_FUZZ_SUMMARY=summary, PROCTOR_FUZZ_PROGRESS=progress_file)
    rc, out = run([xctest, "AgentTests.AnswerFuzzTests/testMalformedAnswersAreRejectedAndWriteNothing"],
                  args.timeout * max(args.n // 50, 10), env=env)
    counts = {}
    if os.path.exists(summary):
        with open(summary) as f:
            counts = json.load(f)
    done = counts.get("cases", 0)
    tally.counts["cases"] = done
    tally.counts["accepted"] = counts.get("accepted", 0)
    tally.counts["rejected"] = counts.get("rejected", 0)
    where = open(progress_file).read().strip() if os.path.exists(progress_file) else "?"
    if rc is None:
        tally.counts["hangs"] += 1
        tally.failures.append("answer case %s (PROCTOR_FUZZ_SEED=%d PROCTOR_FUZZ_CASE=%s): hung" % (where, args.seed, where))
    elif rc < 0 or TRAP.search(out) or not counts:
        tally.counts["crashes"] += 1
        tally.counts["cases"] = max(done, int(where) + 1 if where.isdigit() else 0)
        tally.failures.append("answer case %s (PROCTOR_FUZZ_SEED=%d PROCTOR_FUZZ_CASE=%s): exit %s: %s" % (
            where, args.seed, where, rc, "\n".join(l for l in out.splitlines() if TRAP.search(l) or "at /" in l)[:1500]))
    elif rc != 0:
        tally.counts["writes"] += 1  # the test's own oracle: a write, a `failed`, or a reason missing
        tally.failures.append("AnswerFuzzTests failed:\n" + "\n".join(l for l in out.splitlines() if "error" in l)[:3000])
    if args.loop_cases:
        fuzz_answer_loop(args, proctor, tally, tmp)


# ---------------------------------------------------------------------------------------- main

def progress(tally, n):
    c = tally.counts["cases"]
    if c % max(n // 10, 1) == 0:
        B.log("  %s: %d/%d" % (tally.name, c, n))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-n", type=int, default=10000, help="cases per class (default 10000)")
    ap.add_argument("--class", dest="cls", choices=["toml", "answer", "argv", "all"], default="all")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--loop-cases", type=int, default=None,
                    help="answers also sent through the real `proctor run` (default n/100, at least 10, at most 100)")
    args = ap.parse_args()
    if args.loop_cases is None:
        args.loop_cases = min(max(args.n // 100, 10), 100)
    proctor = os.environ.get("PROCTOR_BIN")
    if not proctor or not os.access(proctor, os.X_OK):
        sys.exit("set PROCTOR_BIN to the proctor binary (bench/fuzz.sh does)")
    launcher = os.environ.get("PROCTOR_SANDBOX_BIN") or os.path.join(os.path.dirname(proctor), "proctor-sandbox")
    classes = ["toml", "answer", "argv"] if args.cls == "all" else [args.cls]
    tallies = []
    for cls in classes:
        tally = Tally(cls)
        tally.loop, tally.loop_failures, tally.loop_seconds = None, [], 0.0
        tmp = tempfile.mkdtemp(prefix="proctor-fuzz-%s-" % cls)
        B.log("fuzz %s: %d cases, seed %d, in %s" % (cls, args.n, args.seed, tmp))
        start = time.time()
        try:
            {"toml": lambda: fuzz_toml(args, proctor, tally, tmp),
             "answer": lambda: fuzz_answer(args, proctor, tally, tmp),
             "argv": lambda: fuzz_argv(args, proctor, launcher, tally, tmp)}[cls]()
        finally:
            tally.seconds = time.time() - start
            keep = tally.bad() or tally.loop_failures
            if not keep:
                subprocess.run(["rm", "-rf", "--", tmp])
            tally.tmp = tmp if keep else None
        tallies.append(tally)

    lines = B.machine_lines(["seed:      %d, %d cases per class (python3 bench/fuzz.py --seed %d -n %d --class %s)" % (
        args.seed, args.n, args.seed, args.n, args.cls)], ) + [""]
    lines += B.table(["class"] + Tally.COLUMNS + ["seconds"],
                     [[t.name] + [t.counts[c] for c in Tally.COLUMNS] + ["%.0f" % t.seconds] for t in tallies])
    for t in tallies:
        if t.loop is not None:
            lines.append("")
            lines.append("answer, through the real loop: %d iterations of proctor run --agent http in %.0f s: %s%s" % (
                args.loop_cases, t.loop_seconds, t.loop, "; FAILED: " + "; ".join(t.loop_failures) if t.loop_failures else
                "; run went on, tree and pins intact (proctor check), report rendered"))
    failed = False
    for t in tallies:
        if t.failures or t.loop_failures:
            failed = True
            lines.append("")
            lines.append("%s failures (first 10 of %d; temporary files kept in %s):" % (
                t.name, len(t.failures + t.loop_failures), t.tmp))
            lines += ["  " + f for f in (t.failures + t.loop_failures)[:10]]
            with open(os.path.join(t.tmp, "failures.txt"), "w") as f:
                f.write("\n".join(t.failures + t.loop_failures) + "\n")
            lines.append("  all of them: %s" % os.path.join(t.tmp, "failures.txt"))
    lines.append("")
    lines.append("fuzz: %s (seed %d)" % ("FAILED: crashes, hangs, writes or unlocated errors above" if failed else
                                         "no crash, no hang, nothing written, every error located", args.seed))
    B.emit("fuzz", lines)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
