"""Shared by bench/crash.py, soak.py, load.py and diskfull.py (issue 10, "Reliability in figures"):
a timed workspace, the consistency oracle checked from outside (git CLI, the ledger files, /proc,
`proctor status`), and process bookkeeping (this process is a child subreaper, so whatever a killed
supervisor leaves behind is re-parented here and found). python3 standard library only.
"""

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

HEADER = "iteration\tcommit\tscore\tsealed\tstatus\tseconds\tpeak_mem_mb\tpeak_gpu_mem_mb\tfeatures\ttrees\tdescription"
STATUSES = {"keep", "discard", "crash", "timeout", "rejected"}

# The agent: a shell command agent in the agent sandbox that sleeps AGENT_SLEEP seconds, then sets X.
# Every third iteration is worse (a discard and a revert); the others improve on every earlier keep
# (a gate pass, the confirmation seeds and a commit). Its argv[0] is agent-TAG, so the agent's
# launcher shows the workspace's tag.
AGENT = ("i=$(sed -n 's/^This is iteration \\([0-9]*\\)\\..*/\\1/p' \"$1\" | tail -n 1); sleep %(agent)s; "
         "x=$(awk -v i=$i 'BEGIN{ if (i %% 3 == 0) print 0.0001 * i; else print 0.5 + 0.0004 * i }'); "
         "sed \"s/^X = [^ ]*/X = $x/\" train.py > $HOME/t && cat $HOME/t > train.py; echo \"SUMMARY: X to $x\"")

TRAIN = """\
import os, sys, time
X = 0.2  # mutate: float 0.0..1.0 linear
out = os.environ["PROCTOR_OUTPUTS"]
seed = os.environ["PROCTOR_SEED"]
open(os.path.join(out, "started-" + seed), "w").write(str(time.time()))
time.sleep(%(experiment)s)
with open(os.path.join(out, "pred.txt"), "w") as f:
    f.write("%%r %%s\\n" %% (X, seed))
"""

PREPARE = """\
import json, os, time
x, seed = open(os.path.join(os.environ.get("PROCTOR_OUTPUTS", "outputs"), "pred.txt")).read().split()
target = float(open("holdout/target.txt").read())
time.sleep(%(evaluator)s)
print(json.dumps({"score": -(float(x) - target) ** 2 + int(seed) * 1e-9}))
"""


def toml(tag, agent="command", agent_sleep=0.1, confirm=True, exp_timeout="30s", extra=""):
    text = B.FILES_TOML + """
[experiment]
command = ["python3", "train.py", "exp-%(tag)s"]
timeout = "%(timeout)s"
seeds   = [1]

[evaluator]
command   = ["python3", "prepare.py", "eval-%(tag)s"]
metric    = "score"
direction = "maximize"

[gates]
min_improvement = 0.0001
confirm_seeds   = %(confirm)s
fresh_seeds     = false   # the crash oracle tells the confirmation seeds by their values, 2 and 3
""" % {"tag": tag, "timeout": exp_timeout, "confirm": "[2, 3]" if confirm else "[]"}
    if agent == "command":
        cmd = json.dumps(["sh", "-c", AGENT % {"agent": agent_sleep}, "agent-" + tag, "{prompt_file}"])
        text += '\n[agent]\nkind    = "command"\ncommand = %s\ntimeout = "30s"\n' % cmd
    else:
        text += '\n[agent]\nkind = "mutate"\n'
    return text + extra


def make_template(path, tag, experiment=0.1, evaluator=0.1, train=None, **kw):
    """A template for `proctor init --template`; train.py writes outputs/started-SEED when it starts."""
    os.makedirs(os.path.join(path, "holdout"))
    files = {"proctor.toml": toml(tag, **kw),
             "train.py": train if train is not None else TRAIN % {"experiment": experiment},
             "prepare.py": PREPARE % {"evaluator": evaluator},
             "LOG.md": "# notes\n", "holdout/target.txt": "1.0\n"}
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)


class Proctor:
    """The binary, and the environment every run of one benchmark shares (its own machine lock)."""

    def __init__(self, tmp):
        self.bin = os.environ.get("PROCTOR_BIN") or os.path.join(B.REPO, ".build-static/release/proctor")
        if not os.access(self.bin, os.X_OK):
            sys.exit("missing %s: set PROCTOR_BIN or run through the bench/*.sh wrapper" % self.bin)
        python = B.real_python()
        self.env = dict(os.environ)
        self.env["PATH"] = os.path.dirname(python) + ":" + self.env.get("PATH", os.defpath)
        self.machine_lock = os.path.join(tmp, "machine.lock")
        self.env["PROCTOR_MACHINE_LOCK"] = self.machine_lock

    def init(self, template, ws):
        r = subprocess.run([self.bin, "init", ws, "--template", template], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("proctor init failed:\n" + r.stdout + r.stderr)

    def start(self, args, log_path):
        out = open(log_path, "ab")
        try:
            return subprocess.Popen([self.bin] + args, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        finally:
            out.close()

    def status(self, ws):
        r = subprocess.run([self.bin, "status", "--workspace", ws], env=self.env, capture_output=True, text=True)
        return r.stdout + r.stderr


def git(ws, *args):
    r = subprocess.run(["git", "-C", ws, "-c", "core.hooksPath=/dev/null", "-c", "safe.directory=*"] + list(args), capture_output=True, text=True)
    return r.returncode, r.stdout.strip()


def scratch(kind):
    """This process a subreaper, a temporary directory (BENCH_TMPDIR, /var/tmp) and the binary."""
    become_subreaper()
    # SIGTERM (a CI timeout, kill PID) ends the bench through its `finally`: the runs are killed, tmp removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="proctor-bench-%s-" % kind, dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    os.chmod(tmp, 0o755)
    return tmp, Proctor(tmp)


def cleanup(tmp):
    """Kills what is left of this process's descendants; removes `tmp` unless BENCH_KEEP is set."""
    kill_tree(descendants(os.getpid()))
    if os.environ.get("BENCH_KEEP"):
        B.log("kept " + tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ processes

def become_subreaper():
    """PR_SET_CHILD_SUBREAPER: orphans of the supervisors this process starts are re-parented here."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(ctypes.get_errno()))


def children(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def descendants(pid):
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def reap(keep=()):
    """Reaps exited orphans (this process is their subreaper), never a pid in `keep`."""
    for pid in children(os.getpid()):
        if pid not in keep and is_zombie(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def tagged(tag):
    """Live processes anywhere whose command line holds the workspace's tag."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            line = cmdline(int(name))
            if tag in line and not is_zombie(int(name)):
                found.append("%s: %s" % (name, line[:160]))
    return found


def leftovers(tag, keep=(), wait=5.0):
    """What is still alive `wait` seconds after a supervisor ended: this process's descendants
    (orphans re-parented to it, an init whose command line is wiped included) and tagged processes."""
    deadline = time.time() + wait
    while True:
        reap(keep)
        mine = [p for p in descendants(os.getpid()) if p not in keep and not is_zombie(p)]
        left = ["%d: %s" % (p, cmdline(p)[:160] or "?") for p in mine] + [t for t in tagged(tag)
                                                                         if int(t.split(":")[0]) not in mine]
        if not left or time.time() > deadline:
            return left
        time.sleep(0.05)


def lock_free(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the ledger and the oracle

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def ledger_lines(ws):
    """results.tsv's whole lines, header included (cheap enough to poll)."""
    text = read(os.path.join(ws, ".proctor/results.tsv")) or ""
    return text.split("\n")[:-1]


def state(ws):
    try:
        return json.loads(read(os.path.join(ws, ".proctor/state.json")) or "null")
    except ValueError:
        return None


def ledger(ws):
    """(rows as field lists, records as dicts, problems) of .proctor/results.tsv and runs.jsonl."""
    problems = []
    tsv = read(os.path.join(ws, ".proctor/results.tsv")) or ""
    jsonl = read(os.path.join(ws, ".proctor/runs.jsonl")) or ""
    if tsv and not tsv.endswith("\n"):
        problems.append("results.tsv: torn last line")
    if jsonl and not jsonl.endswith("\n"):
        problems.append("runs.jsonl: torn last line")
    lines = tsv.split("\n")[:-1] if tsv else []
    if lines and lines[0] != HEADER:
        problems.append("results.tsv: header %r" % lines[0])
    rows = []
    for n, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) != 11 or not fields[0].isdigit() or fields[4] not in STATUSES:
            problems.append("results.tsv line %d malformed: %r" % (n, line[:120]))
        rows.append(fields)
    records = []
    for n, line in enumerate(jsonl.split("\n")[:-1] if jsonl else [], 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            problems.append("runs.jsonl line %d does not parse: %r" % (n, line[:120]))
    return rows, records, problems


def check(proctor, ws, tag, locked, keep_pids=(), wait=5.0, user_data=()):
    """Every invariant of issue 10's crash list, from outside; returns a list of violations.
    `locked`: {path: original bytes} of the locked files."""
    bad = []
    rows, records, problems = ledger(ws)
    bad += problems
    if len(rows) != len(records):
        bad.append("results.tsv has %d rows, runs.jsonl %d records" % (len(rows), len(records)))
    for row, rec in zip(rows, records):
        if (row[0], row[4]) != (str(rec.get("iteration")), rec.get("status")):
            bad.append("row %s %s != record %s %s" % (row[0], row[4], rec.get("iteration"), rec.get("status")))
        elif row[4] == "keep" and not (rec.get("commit") or "").startswith(row[1] or "-"):
            bad.append("row %s commit %s != record's %s" % (row[0], row[1], rec.get("commit")))
    state = globals()["state"](ws) or {}
    run, branch = state.get("run"), state.get("branch")
    # Per run, the iterations are 0, 1, 2, ... with no gap or repeat.
    by_run = {}
    for rec in records:
        by_run.setdefault(rec.get("run"), []).append(rec.get("iteration"))
    # (`--parallel` records in completion order: each number once, none missing.)
    for r, its in by_run.items():
        if sorted(its) != list(range(len(its))):
            bad.append("run %s: iterations %s are not contiguous from 0" % (r, its))
    mine = [rec for rec in records if rec.get("run") == run]
    if not mine:
        bad.append("no record of the current run %s" % run)
        return bad
    # Every keep on the branch, in order, and nothing else; the tip is the last keep.
    base = mine[0].get("commit")
    keeps = [rec.get("commit") for rec in mine[1:] if rec.get("status") == "keep"]
    rc, chain = git(ws, "rev-list", "--first-parent", "--reverse", "%s..refs/heads/%s" % (base, branch))
    chain = chain.split() if rc == 0 else ["<rev-list failed>"]
    if chain != keeps:
        bad.append("branch %s holds %s, the ledger's keeps are %s" % (branch, [c[:12] for c in chain], [c[:12] for c in keeps]))
    tip = keeps[-1] if keeps else base
    _, head_tip = git(ws, "rev-parse", "refs/heads/%s" % branch)
    if head_tip != tip:
        bad.append("branch tip %s != last keep %s" % (head_tip[:12], (tip or "")[:12]))
    if state.get("bestCommit") != tip:
        bad.append("state.json bestCommit %s != last keep %s" % ((state.get("bestCommit") or "")[:12], (tip or "")[:12]))
    _, head = git(ws, "symbolic-ref", "-q", "HEAD")
    if head != "refs/heads/" + branch:
        bad.append("HEAD is %r, not the run's branch" % head)
    # The working tree is the tip: nothing modified, untracked or ignored but .proctor/ and outputs/,
    # and every tracked file's bytes hash to the tip's blob (not trusting git's stat cache).
    _, st = git(ws, "status", "--porcelain", "--untracked-files=all", "--ignored")
    # (`user_data`: the workspace's own git-ignored files, such as the bundled workspace's labels.)
    extra = [l for l in st.split("\n") if l and not l[3:].startswith((".proctor/", "outputs/") + tuple(user_data))]
    if extra:
        bad.append("working tree differs from the tip: %s" % extra[:5])
    _, tree = git(ws, "ls-tree", "-r", tip or "HEAD")
    for line in tree.split("\n"):
        if "\t" not in line:
            continue
        meta, path = line.split("\t", 1)
        blob = meta.split()[2]
        try:
            data = open(os.path.join(ws, path), "rb").read()
        except OSError:
            bad.append("%s is missing from the working tree" % path)
            continue
        if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != blob:
            bad.append("%s differs from the tip's blob" % path)
    # The locked files: unchanged on disk and in the tip.
    for path, original in locked.items():
        try:
            now = open(os.path.join(ws, path), "rb").read()
        except OSError:
            now = None
        if now != original:
            bad.append("locked file %s changed on disk" % path)
        pin = state.get("pins", {}).get(path)
        if pin != hashlib.sha256(original).hexdigest():
            bad.append("state.json pins %s as %s" % (path, pin))
    # No process left, both locks free.
    left = leftovers(tag, keep_pids, wait)
    if left:
        bad.append("processes left: %s" % left[:4])
    # `proctor status` says "free" for a lock whose holder record it cannot read: try the flock too.
    status = proctor.status(ws)
    if "lock: free" not in status:
        bad.append("proctor status: %s" % status.split("\n")[0])
    slots = int(proctor.env.get("PROCTOR_MACHINE_SLOTS", "1"))
    machine = [(("machine slot %d" % k) if k else "machine", proctor.machine_lock + (".%d" % k if k else "")) for k in range(slots)]
    for name, path in [("workspace", os.path.join(ws, ".proctor/lock"))] + machine:
        if not lock_free(path):
            bad.append("the %s lock is held (flock)" % name)
    return bad


def originals(ws, paths):
    return {p: open(os.path.join(ws, p), "rb").read() for p in paths}


def plant_and_check(proctor, ws, tag, locked):
    """Plants each inconsistency the oracle must catch, on a consistent workspace (copies of it),
    and returns the plantings it missed. An oracle that cannot fail is worth nothing."""
    missed = []
    tsv = os.path.join(".proctor", "results.tsv")

    def edit(rel, fn):
        def go(w):
            p = os.path.join(w, rel)
            with open(p) as f:
                text = f.read()
            with open(p, "w") as f:
                f.write(fn(text))
        return go

    def drop_row(text):
        lines = text.split("\n")
        return "\n".join(lines[:-2]) + "\n"

    def flip_status(text):
        lines = text.split("\n")
        fields = lines[-2].split("\t")
        fields[4] = "discard" if fields[4] == "keep" else "keep"
        lines[-2] = "\t".join(fields)
        return "\n".join(lines)

    def commit_extra(w):
        with open(os.path.join(w, "train.py"), "a") as f:
            f.write("# extra\n")
        subprocess.run(["git", "-C", w, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "extra"], check=True)

    def sleeper(w):
        return subprocess.Popen(["sh", "-c", "sleep 30; :", tag], start_new_session=True)

    def hold_lock(w):
        return subprocess.Popen(["flock", os.path.join(w, ".proctor/lock"), "sleep", "30"], start_new_session=True)

    plantings = [
        ("a ledger row cut", edit(tsv, drop_row)),
        ("a row's status edited", edit(tsv, flip_status)),
        ("a torn runs.jsonl tail", edit(".proctor/runs.jsonl", lambda t: t + '{"iteration": ')),
        ("an extra commit on the branch", commit_extra),
        ("an edited tracked file", edit("train.py", lambda t: t + "# edit\n")),
        ("an untracked file", lambda w: open(os.path.join(w, "stray.txt"), "w").write("x")),
        ("an edited locked file", edit("prepare.py", lambda t: t + "# tamper\n")),
        ("a process with the tag left running", sleeper),
        ("the workspace lock held", hold_lock),
    ]
    for name, plant in plantings:
        copy = ws + "-planted"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(ws, copy, symlinks=True)
        proc = plant(copy)
        try:
            time.sleep(0.1 if proc else 0)
            if not check(proctor, copy, tag, locked, wait=0.3):
                missed.append(name)
        finally:
            if isinstance(proc, subprocess.Popen):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                leftovers(tag, wait=1.0)  # reaps the group's orphans
            shutil.rmtree(copy, ignore_errors=True)
    return missed


def kill_tree(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
