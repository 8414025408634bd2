#!/usr/bin/env python3
"""Disk full (issue 10): the workspace on a size-capped tmpfs (mount -t tmpfs -o size=8m, so root
is needed to mount; with --user NAME the mount point is that user's and every proctor command runs
as NAME through runuser). Four moments the filesystem fills up:

  experiment outputs  the experiment itself writes into outputs/ until ENOSPC;
  logs                an outside filler fills the fs while the agent runs, before the iteration's
                      .proctor/logs files are made;
  ledger append       the filler fills it while the evaluator of a discarded candidate runs (nothing
                      to commit: the next writes are the revert and the ledger's);
  commit              the filler fills it while the last confirmation evaluator of a kept candidate
                      runs (the next writes are the commit's objects, then the ledger's).

Each scenario: a fresh workspace, `proctor run --iterations 4` with the fill-up in iteration 2 or 3;
expected: exit 0 with a `crash` row for that iteration, or a clear error (non-zero exit, a
message naming the full disk); the ledger still parses. Then the filler's file is removed and
`proctor run --resume --iterations 2` must exit 0 and the consistency oracle pass (rows = records,
keeps on the branch, tree = tip, locked files, processes, locks), with every row and keep from
before the fill-up still there.

Run through bench/diskfull.sh (as root), or: PROCTOR_BIN=... python3 bench/diskfull.py [--user NAME].
"""

import argparse
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import crash as C  # noqa: E402
import reliability as R  # noqa: E402

# train.py that fills outputs/ until the disk is full when FILL = 1 (set by the agent at iteration 2).
FILL_TRAIN = R.TRAIN.replace("time.sleep(%(experiment)s)\n", """time.sleep(%(experiment)s)
FILL = 0
if FILL:
    with open(os.path.join(out, "fill.bin"), "wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()
""")

FILL_AGENT = ("i=$(sed -n 's/^This is iteration \\([0-9]*\\)\\..*/\\1/p' \"$1\" | tail -n 1); "
              "x=$(awk -v i=$i 'BEGIN{ print 0.5 + 0.0004 * i }'); f=0; [ \"$i\" = 2 ] && f=1; "
              "sed -e \"s/^X = [^ ]*/X = $x/\" -e \"s/^FILL = .*/FILL = $f/\" train.py > $HOME/t && cat $HOME/t > train.py; "
              "echo \"SUMMARY: X to $x fill $f\"")

SCENARIOS = ["experiment outputs", "logs", "ledger append", "commit"]


def fill(path, leave=0):
    """Appends to `path` until the filesystem is full, or until only `leave` bytes are free; returns
    the bytes written."""
    total = 0
    with open(path, "ab", buffering=0) as f:
        if leave:
            st = os.statvfs(path)
            want = max(0, st.f_bavail * st.f_frsize - leave)
            while total < want:
                total += f.write(b"\0" * min(1 << 20, want - total))
            return total
        for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
            block = b"\0" * chunk
            while True:
                try:
                    total += f.write(block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return total


class AsUser(R.Proctor):
    """Every proctor command through `runuser -u USER --`."""

    def __init__(self, tmp, user):
        super().__init__(tmp)
        self.user = user

    def argv(self, args):
        if not self.user:
            return [self.bin] + args
        return ["runuser", "-u", self.user, "--", "env", "PROCTOR_MACHINE_LOCK=" + self.machine_lock, self.bin] + args

    def init(self, template, ws):
        r = subprocess.run(self.argv(["init", ws, "--template", template]), env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("proctor init failed:\n" + r.stdout + r.stderr)

    def start(self, args, log_path):
        with open(log_path, "ab") as out:
            return subprocess.Popen(self.argv(args), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    def status(self, ws):
        r = subprocess.run(self.argv(["status", "--workspace", ws]), env=self.env, capture_output=True, text=True)
        return r.stdout + r.stderr


def scenario(proctor, mnt, tmp, name, n, user):
    tag = "diskfull%d-%d" % (os.getpid(), n)
    template = os.path.join(tmp, "template-%d" % n)
    # The evaluator takes 0.5 s: the watch scans /proc for the sandboxes, and on a loaded CI machine a
    # 0.1 s one could come and go between two scans (the filler then never ran).
    R.make_template(template, tag, experiment=0.05, evaluator=0.5, agent_sleep=0.3, train=FILL_TRAIN % {"experiment": 0.05})
    if name == "experiment outputs":
        toml = open(os.path.join(template, "proctor.toml")).read()
        start = toml.index('command = ["sh"')
        end = toml.index("\n", start)
        import json
        toml = toml[:start] + "command = " + json.dumps(["sh", "-c", FILL_AGENT, "agent-" + tag, "{prompt_file}"]) + toml[end:]
        open(os.path.join(template, "proctor.toml"), "w").write(toml)
    if user:
        subprocess.run(["chown", "-R", user, template], check=True)
    ws = os.path.join(mnt, "ws-%d" % n)
    proctor.init(template, ws)
    locked = R.originals(ws, ["prepare.py"])
    log = os.path.join(tmp, "run-%d.log" % n)
    filler = os.path.join(mnt, "filler-%d" % n)
    proc = proctor.start(["run", "--workspace", ws, "--iterations", "4"], log)
    # The supervisor is the runuser's child when --user is given.
    sup = proc
    if user:
        deadline = time.time() + 10
        while time.time() < deadline and not R.children(proc.pid):
            time.sleep(0.005)
        kids = R.children(proc.pid)
        sup = type("P", (), {"pid": kids[0] if kids else proc.pid})()
    watch = C.Watch(sup, ws, tag, 0, 0)
    # The iteration and sandbox during which the filler runs; the rows before it. For the ledger
    # append and the commit, the filesystem is filled but for 512 KiB while the (last) evaluator runs,
    # so that its output is still logged, and the rest the moment its launcher is gone.
    target = {"logs": (2, "agent"), "ledger append": (3, "eval"), "commit": (2, "eval-after-3")}.get(name)
    filled, rows_before, armed = 0, None, False
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        roles, markers, _ = watch.poll()
        if target and not filled and watch.iteration == target[0]:
            role = target[1]
            running = (role in roles) if role != "eval-after-3" else ("eval" in roles and 3 in markers)
            if running and name == "logs":
                rows_before = R.ledger(ws)[0]
                filled = fill(filler)
            elif running and not armed:
                rows_before = R.ledger(ws)[0]
                armed = fill(filler, leave=512 << 10)
            elif armed and "eval" not in roles:
                filled = armed + fill(filler)
        time.sleep(0.001 if armed else 0.002)
    if proc.poll() is None:
        proc.kill()
    rc = proc.wait()
    out = open(log, errors="replace").read()
    rows, records, problems = R.ledger(ws)
    if name == "experiment outputs":
        rows_before = rows[:2]
    outcome = "exit %d" % rc
    crash_rows = [r for r in rows if r[4] == "crash"]
    if crash_rows:
        outcome += ", crash row(s) %s: %s" % (",".join(r[0] for r in crash_rows), crash_rows[0][10][:160])
    message = [line for line in out.split("\n") if line.startswith("proctor:") and not line.startswith("proctor: warning")]
    if message:
        outcome += "; " + message[-1][:140]
    # Naming the full disk: ENOSPC's words, or the read-back check's "disk full?" (a commit whose
    # object write failed though libgit2 reported success, Repository.checkWritten).
    clear = crash_rows or (rc != 0 and any("space" in m.lower() or "ENOSPC" in m or "disk full" in m.lower() for m in message))
    if not clear:
        problems.append("neither a crash row nor a clear error: %s" % out[-400:].replace("\n", " | "))
    if target and not filled:
        problems.append("the filler never ran")
    # Free the space, resume.
    if os.path.exists(filler):
        os.unlink(filler)
    resume = proctor.start(["run", "--workspace", ws, "--resume", "--iterations", "2"], log)
    rc2 = resume.wait()
    if rc2 != 0:
        problems.append("--resume after freeing space exited %d: %s" % (rc2, open(log, errors="replace").read()[-500:]
                                                                        .replace("\n", " | ")))
    after = R.ledger(ws)[0]
    if rows_before is not None and after[:len(rows_before)] != rows_before:
        problems.append("rows recorded before the fill-up changed or were lost")
    problems += R.check(proctor, ws, tag, locked)
    return {"scenario": name, "filled": filled, "outcome": outcome, "resume": rc2,
            "rows": " ".join("%s:%s" % (r[0], r[4]) for r in after), "problems": problems}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="8m", help="tmpfs size= (8m)")
    ap.add_argument("--user", help="run proctor as this user (the bench itself runs as root to mount)")
    ap.add_argument("--scenario", choices=SCENARIOS, action="append", help="only these (repeatable)")
    args = ap.parse_args()
    if os.getuid() != 0:
        sys.exit("diskfull: mounting a size-capped tmpfs needs root (run proctor unprivileged with --user NAME)")

    R.become_subreaper()
    tmp = tempfile.mkdtemp(prefix="proctor-bench-diskfull-", dir=os.environ.get("BENCH_TMPDIR", "/var/tmp"))
    os.chmod(tmp, 0o755)
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % args.size, "tmpfs", mnt], check=True)
    results = []
    try:
        if args.user:
            subprocess.run(["chown", args.user, mnt, tmp], check=True)
        proctor = AsUser(tmp, args.user)
        if args.user:
            subprocess.run(["chown", args.user, proctor.machine_lock] if os.path.exists(proctor.machine_lock) else ["true"])
        n = 0
        for name in args.scenario or SCENARIOS:
            # The filler is timed by watching /proc for the sandboxes; on a loaded machine the moment
            # can pass between two looks. That is the bench missing, not proctor failing: try again
            # on a fresh workspace (at most three times), and say so.
            for attempt in range(3):
                res = scenario(proctor, mnt, tmp, name, n, args.user)
                n += 1
                if not any("the filler never ran" in p for p in res["problems"]):
                    break
                B.log("%-20s the filler's moment passed unseen (attempt %d); again" % (name, attempt + 1))
            results.append(res)
            B.log("%-20s %s; resume exit %d; %s" % (name, res["outcome"], res["resume"],
                                                   "ok" if not res["problems"] else "FAIL " + res["problems"][0]))
        out = ["# proctor disk full: workspace on tmpfs size=%s, proctor as %s" % (args.size, args.user or "root"), ""]
        out += B.machine_lines(["binary:    %s" % proctor.bin])
        out += [""]
        out += B.table(["scenario", "filler bytes", "run", "crash rows", "resume", "checks"],
                       [[r["scenario"], r["filled"] or "-", r["outcome"].split(",")[0].split(";")[0],
                         r["outcome"].count("crash row"), "exit %d" % r["resume"],
                         "ok" if not r["problems"] else "FAILED"] for r in results])
        out += [""] + ["%s: %s\n  rows after resume: %s" % (r["scenario"], r["outcome"], r["rows"]) for r in results]
        failures = ["%s: %s" % (r["scenario"], p) for r in results for p in r["problems"]]
        out += ["", "failures: %d" % len(failures)] + ["  " + f for f in failures]
        B.emit("diskfull", out)
    finally:
        R.kill_tree(R.descendants(os.getpid()))
        R.leftovers("diskfull%d-" % os.getpid(), wait=3)
        subprocess.run(["umount", "-l", mnt])
        if os.environ.get("BENCH_KEEP"):
            B.log("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if any(r["problems"] for r in results) else 0)


if __name__ == "__main__":
    main()
