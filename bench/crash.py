#!/usr/bin/env python3
"""Crash injection (issue 10): SIGKILL of the supervisor at seeded random moments across every stage
of an iteration, then `proctor run --resume`; SIGKILL of the launcher's helper and of the sandbox's
init. After each kill, from outside: the ledger rows contiguous and equal to the runs.jsonl records,
every keep on the branch in order, the tip the last keep, the working tree the tip, the locked files
unchanged, no process left, both locks free (bench/reliability.py's oracle).

The workspace's agent (a command agent), experiment and evaluator each sleep a known time; the
driver watches the supervisor's process tree (every launcher's command line shows the workspace's
tag and the role: agent-TAG, exp-TAG, eval-TAG) and the experiment's `outputs/started-SEED`
markers, waits for the event that opens the targeted stage, then kills after a seeded delay drawn
from the stage's window. The windows of the in-process stages (validation; gate, commit, ledger
append; revert) are measured on the run's own timeline (each resume is watched). Which stage a kill
really hit is decided afterwards from evidence (which sandbox was alive; a commit the ledger does
not know; a record without its row; a row), and the table shows both.

Run through bench/crash.sh, or: PROCTOR_BIN=... python3 bench/crash.py [-n KILLS] [--seed S].
Reproduce one kill: --seed S --kill K (its stage and delay, on a fresh workspace).
"""

import argparse
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import reliability as R  # noqa: E402

AGENT_S, EXP_S, EVAL_S = 0.15, 0.15, 0.1

# Targets, in the order of an iteration. `baseline` is the first kill of every workspace.
TARGETS = ["agent", "validation", "experiment", "evaluator", "confirmation", "commit", "ledger append",
           "revert", "launcher helper", "sandbox init"]
# What a kill can be found to have hit (the table's rows).
HITS = ["baseline", "propose", "agent", "validation", "experiment", "between sandboxes", "evaluator", "confirmation",
        "gate/keep", "commit", "ledger append", "after ledger append", "revert", "launcher helper", "sandbox init"]


class Watch:
    """Polls one `proctor run`: its sandboxes by role, the outputs' markers and the ledger."""

    def __init__(self, proc, ws, tag, first_iteration, rows_at_start):
        self.proc, self.ws, self.tag = proc, ws, tag
        self.first, self.rows0 = first_iteration, rows_at_start
        self.iteration = first_iteration
        self.events = {}  # (iteration, name) -> first time seen
        self.seen = set()
        self.last_seen = {}
        self.branch = None
        self.size, self.ref = None, None
        self.size, self.ref = self.files()

    def snapshot(self):
        roles = {}
        for helper in R.children(self.proc.pid):
            line = R.cmdline(helper)
            for role in ("agent", "exp", "eval"):
                if "%s-%s" % (role, self.tag) in line and "proctor-sandbox" in line:
                    inits = R.children(helper)
                    roles[role] = (helper, inits[0] if inits else None)
        try:
            markers = {int(n.split("-")[1]) for n in os.listdir(os.path.join(self.ws, "outputs")) if n.startswith("started-")}
        except (OSError, ValueError):
            markers = set()
        rows = len(R.ledger_lines(self.ws)) - 1
        return roles, markers, rows

    def poll(self):
        """Updates the iteration and its events; returns the snapshot."""
        size, ref = self.files()
        roles, markers, rows = self.snapshot()
        now = time.monotonic()
        # A record or a commit counts for the iteration before this poll's row, once it was evaluated.
        prev = self.iteration
        if size != self.size and (prev, "eval-seen") in self.events:
            self.note(prev, "record", now)
        if ref != self.ref and (prev, "eval-seen") in self.events:
            self.note(prev, "ref", now)
        self.size, self.ref = size, ref
        it = self.first + max(0, rows - self.rows0)
        if it != self.iteration:
            self.note(self.iteration, "row", now)
            self.iteration = it
        for role in roles:
            self.note(it, role + "-seen", now)
            self.seen.add((it, role))
        for role in ("agent", "exp", "eval"):
            if role in roles:
                self.last_seen[(it, role)] = now
            elif (it, role) in self.last_seen:
                gone = self.events.get((it, role + "-gone"))
                if gone is None or gone < self.last_seen[(it, role)]:
                    self.events[(it, role + "-gone")] = now
        for m in markers:
            self.note(it, "started-%d" % m, now)
        if "eval" in roles:
            self.note(it, "eval-seen-after-%d" % max(markers or {0}), now)
        return roles, markers, rows

    def files(self):
        """runs.jsonl's size and the run branch's ref (a loose ref, as libgit2 writes it)."""
        try:
            size = os.stat(os.path.join(self.ws, ".proctor/runs.jsonl")).st_size
        except OSError:
            size = 0
        if self.branch is None:
            self.branch = (R.state(self.ws) or {}).get("branch")
        ref = R.read(os.path.join(self.ws, ".git/refs/heads", self.branch)) if self.branch else None
        return size, ref

    def note(self, it, name, t):
        self.events.setdefault((it, name), t)

    def ev(self, it, name):
        return self.events.get((it, name))


def timeline(watch, proc, timeout=120):
    """Watches a run to its end; returns (rc, windows measured: validation, keep tail, discard tail)."""
    last_eval_gone = {}
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        roles, _, _ = watch.poll()
        if "eval" in roles:
            last_eval_gone.pop(watch.iteration, None)
        else:
            last_eval_gone.setdefault(watch.iteration, time.monotonic())
        time.sleep(0.001)
    if proc.poll() is None:
        proc.kill()
    rc = proc.wait()
    watch.poll()
    wins = {}
    for it in range(watch.first, watch.iteration):
        a, e = watch.ev(it, "agent-gone"), watch.ev(it, "exp-seen")
        if a and e and e > a:
            wins["validation"] = e - a
        row, ev = watch.ev(it, "row"), last_eval_gone.get(it)
        if row and ev and row > ev:
            wins["keep tail" if it % 3 else "discard tail"] = row - ev
    return rc, wins


def choose(seed, k, first_in_workspace, only=None):
    rng = random.Random(seed * 1000003 + k)
    order = TARGETS[:]
    random.Random(seed).shuffle(order)
    target = only or ("baseline" if first_in_workspace else order[k % len(order)])
    return target, rng.random(), rng.choice(["agent", "exp", "eval"])


def kill_cycle(proctor, ws, tag, log, target, u, role, windows, fresh):
    """One run, one kill. Returns a dict: what was targeted and hit, the delay, the kill's pid kind."""
    state = R.state(ws)
    last = state.get("lastIteration", 0) if state else 0
    rows0 = len(R.ledger_lines(ws)) - 1 if not fresh else 0
    # The iteration of interest: a keep candidate (i % 3 != 0) for the keep stages, a discard for revert.
    it = last + 1
    if target in ("confirmation", "commit", "ledger append") and it % 3 == 0:
        it += 1
    if target == "revert":
        while it % 3:
            it += 1
    args = ["run", "--workspace", ws, "--iterations", "3"] + ([] if fresh else ["--resume"])
    proc = proctor.start(args, log)
    watch = Watch(proc, ws, tag, 0 if fresh else last + 1, rows0)
    sleeps = {"agent": AGENT_S, "exp": EXP_S, "eval": EVAL_S}
    dtail = windows.get("discard tail", 0.03)
    delay, trigger_at, victim = None, None, proc.pid
    info = {"target": target, "iteration": it}
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        roles, markers, _ = watch.poll()
        cur = watch.iteration
        now = time.monotonic()
        if trigger_at is None:
            fire = False
            if target == "baseline":
                fire, delay = "exp" in roles, u * 3 * (EXP_S + EVAL_S + 0.1)
            elif cur == it:
                if target == "agent":
                    fire, delay = "agent" in roles, u * AGENT_S
                elif target == "validation":
                    fire, delay = watch.ev(it, "agent-gone") is not None, u * windows.get("validation", 0.03)
                elif target == "experiment":
                    fire, delay = "exp" in roles and 1 in markers, u * EXP_S
                elif target == "evaluator":
                    fire, delay = "eval" in roles and not markers & {2, 3}, u * EVAL_S
                elif target == "confirmation":
                    fire, delay = 2 in markers, u * 2 * (EXP_S + EVAL_S + 0.1)
                elif target in ("commit", "ledger append"):
                    # The last evaluator is gone: spin on the branch's ref (commit) or runs.jsonl's size
                    # (ledger append) and kill within half a millisecond of its change.
                    if watch.ev(it, "eval-seen-after-3") is not None and "eval" not in roles:
                        delay = u * 0.0005
                        if spin(watch, target):
                            t = time.monotonic()
                            while time.monotonic() < t + delay:
                                pass
                            os.kill(proc.pid, signal.SIGKILL)
                            info.update(roles={}, markers=set(), delay=delay, victim=proc.pid)
                            break
                elif target == "revert":
                    fire, delay = watch.ev(it, "eval-seen") is not None and "eval" not in roles, u * 1.1 * dtail
                elif target in ("launcher helper", "sandbox init"):
                    fire, delay = role in roles, u * sleeps[role]
            if fire:
                # A file event is timed when the poll saw it, not when this loop came to test it.
                trigger_at = time.monotonic()
        elif now >= trigger_at + delay:
            if target in ("launcher helper", "sandbox init"):
                helper, init = roles.get(role, (None, None))
                victim = helper if target == "launcher helper" else init
                if victim is None:  # the sandbox ended within the delay: kill the next one of its role
                    trigger_at = None
                    time.sleep(0.001)
                    continue
            info.update(roles=dict(roles), markers=set(markers), delay=delay, victim=victim)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                trigger_at = None
                continue
            break
        time.sleep(0.001)
    if "delay" not in info:
        rc = proc.wait() if proc.poll() is not None else (proc.kill(), proc.wait())[1]
        info.update(missed=True, rc=rc)
        return info, proc, watch
    info["watch"] = watch
    return info, proc, watch


def spin(watch, target, limit=5.0):
    """Busy-waits for the commit (the ref file changes) or the record (runs.jsonl grows)."""
    size0, ref0 = watch.size, watch.ref  # as the last poll saw them
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        size, ref = watch.files()
        if (target == "commit" and ref != ref0) or (target == "ledger append" and size != size0):
            return True
    return False


def classify(info, ws, watch):
    """Which stage the kill hit, from what was alive and what the files say after it."""
    target, it = info["target"], info["iteration"]
    if target in ("baseline", "launcher helper", "sandbox init"):
        return target
    roles, markers = info["roles"], info["markers"]
    confirming = any(watch.ev(it, "started-%d" % s) for s in (2, 3))
    if "agent" in roles:
        return "agent"
    if "exp" in roles:
        return "confirmation" if markers & {2, 3} else "experiment"
    if "eval" in roles:
        return "confirmation" if confirming else "evaluator"
    rows, records, _ = R.ledger(ws)
    state = R.state(ws) or {}
    mine = [r for r in records if r.get("run") == state.get("run")]
    if any(r.get("iteration") == it for r in mine):
        # Its record (and row) written: the append and its fsyncs, until the state that follows them.
        return "after ledger append" if state.get("lastIteration", 0) >= it else "ledger append"
    keeps = [r.get("commit") for r in mine if r.get("status") == "keep"]
    _, tip = R.git(ws, "rev-parse", "refs/heads/" + state.get("branch", "?"))
    if keeps and tip != keeps[-1]:
        return "commit"
    if watch.ev(it, "started-1") is None:
        return "validation" if watch.ev(it, "agent-gone") else "propose"
    if confirming and watch.ev(it, "eval-seen-after-3") is None:
        return "confirmation"  # between the confirmation seeds' sandboxes
    if watch.ev(it, "eval-seen") is None:
        return "between sandboxes"
    return "revert" if it % 3 == 0 else "gate/keep"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--kills", type=int, default=100, help="kills (default 100)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the stages' order and the delays (default 1)")
    ap.add_argument("--per-workspace", type=int, default=25,
                    help="kills per workspace; each workspace's first kill is in its baseline (default 25)")
    ap.add_argument("--kill", type=int, help="reproduce kill K of --seed alone, on a fresh workspace")
    ap.add_argument("--stage", choices=TARGETS + ["baseline"], help="every kill targets this stage")
    ap.add_argument("--check-oracle", action="store_true",
                    help="first plant each inconsistency in a finished workspace and require the oracle to catch it")
    args = ap.parse_args()

    tmp, proctor = R.scratch("crash")
    failures, rows, windows = [], [], {}
    t0 = time.time()
    try:
        if args.check_oracle:
            missed = oracle_check(proctor, tmp)
            if missed:
                failures.append("the oracle missed: %s" % ", ".join(missed))
            B.log("oracle check: %s" % ("caught every planted inconsistency" if not missed else "MISSED " + ", ".join(missed)))
        kills = [args.kill] if args.kill is not None else list(range(args.kills))
        ws = tag = locked = None
        for n, k in enumerate(kills):
            fresh = ws is None or (args.kill is None and args.stage is None and k % args.per_workspace == 0)
            if fresh:
                tag = "crash%d-%d" % (args.seed, k)
                template = os.path.join(tmp, "template-%d" % k)
                R.make_template(template, tag, experiment=EXP_S, evaluator=EVAL_S, agent_sleep=AGENT_S)
                ws = os.path.join(tmp, "ws-%d" % k)
                proctor.init(template, ws)
                locked = R.originals(ws, ["prepare.py"])
            target, u, role = choose(args.seed, k, fresh and args.kill is None, args.stage)
            log = os.path.join(tmp, "run-%d.log" % k)
            before = R.ledger(ws)[0]
            info, proc, watch = kill_cycle(proctor, ws, tag, log, target, u, role, windows, fresh)
            where = "kill %d (seed %d, %s, delay %s ms)" % (k, args.seed, target,
                                                             "%.1f" % (info["delay"] * 1000) if "delay" in info else "-")
            problems = []
            if info.get("missed"):
                # The bench's miss, not proctor's: the run ended by itself; it is still checked.
                hit = "missed"
                if info["rc"] != 0:
                    problems.append("the run exited %s: %s" % (info["rc"], tail(log)))
                problems += R.check(proctor, ws, tag, locked)
            else:
                supervisor = info["victim"] == proc.pid
                try:
                    rc = proc.wait(timeout=None if supervisor else 120)
                except Exception:  # noqa: BLE001
                    proc.kill()
                    rc = proc.wait()
                hit = classify(info, ws, watch)
                if supervisor:
                    if rc != -signal.SIGKILL:
                        problems.append("proctor exited %s, not by SIGKILL" % rc)
                    # Straight after the kill: nothing of the run left, both locks free.
                    left = R.leftovers(tag, wait=5.0)
                    if left:
                        problems.append("after the kill, processes left: %s" % left[:3])
                    status = proctor.status(ws)
                    if "lock: free" not in status or not R.lock_free(os.path.join(ws, ".proctor/lock")):
                        problems.append("after the kill, the lock is held: %s" % status.split("\n")[0])
                    last = (R.state(ws) or {}).get("lastIteration", 0)
                    rows_now = len(R.ledger_lines(ws)) - 1
                    resume = proctor.start(["run", "--workspace", ws, "--resume", "--iterations", "1"], log)
                    rc2, wins = timeline(Watch(resume, ws, tag, last + 1, rows_now), resume)
                    windows.update(wins)
                    if rc2 != 0:
                        problems.append("--resume exited %s: %s" % (rc2, tail(log)))
                else:
                    if rc != 0:
                        problems.append("the run exited %s after the %s was killed: %s" % (rc, target, tail(log)))
                    # The killed sandbox's iteration is a crash (its row says what happened).
                    found = R.ledger(ws)[0][len(before):]
                    if not any(r[4] == "crash" for r in found):
                        problems.append("no crash row after the %s was killed: %s" % (target, [r[4] for r in found]))
                after = R.ledger(ws)[0]
                if after[:len(before)] != before:
                    problems.append("rows recorded before the kill changed")
                problems += R.check(proctor, ws, tag, locked)
            rows.append((target, hit, problems))
            if problems and args.kill is None:
                ws = None  # the next kill on a fresh workspace: this one may be stuck
            for p in problems:
                failures.append("%s: %s" % (where, p))
            B.log("%3d/%d  %-16s hit %-20s %6s ms  %s  [windows %s]" % (
                n + 1, len(kills), target, hit, "%.1f" % (info.get("delay", 0) * 1000),
                "ok" if not problems else "FAIL " + problems[0],
                " ".join("%s %.0f ms" % (k, v * 1000) for k, v in sorted(windows.items()))))
        report(args, rows, failures, time.time() - t0)
    finally:
        R.cleanup(tmp)
    sys.exit(1 if failures else 0)


def tail(path, n=600):
    try:
        return open(path, errors="replace").read()[-n:].replace("\n", " | ")
    except OSError:
        return ""


def oracle_check(proctor, tmp):
    """A finished, consistent workspace; each planted inconsistency must be caught."""
    tag = "crashoracle"
    template = os.path.join(tmp, "template-oracle")
    R.make_template(template, tag, experiment=0, evaluator=0, agent_sleep=0)
    ws = os.path.join(tmp, "ws-oracle")
    proctor.init(template, ws)
    locked = R.originals(ws, ["prepare.py"])
    proc = proctor.start(["run", "--workspace", ws, "--iterations", "3"], os.path.join(tmp, "oracle.log"))
    if proc.wait() != 0:
        return ["(the oracle's workspace run failed: %s)" % tail(os.path.join(tmp, "oracle.log"))]
    clean = R.check(proctor, ws, tag, locked)
    if clean:
        return ["(a consistent workspace was found inconsistent: %s)" % clean]
    return R.plant_and_check(proctor, ws, tag, locked)


def report(args, rows, failures, seconds):
    targeted = {}
    hits = {}
    bad = {}
    for target, hit, problems in rows:
        targeted[target] = targeted.get(target, 0) + 1
        hits[hit] = hits.get(hit, 0) + 1
        if problems:
            bad[hit] = bad.get(hit, 0) + 1
    table = [[h, targeted.get(h, 0) if h in TARGETS + ["baseline"] else "-", hits.get(h, 0), bad.get(h, 0)]
             for h in HITS + (["missed"] if "missed" in hits else [])]
    out = ["# proctor crash injection: %d kills, seed %d%s" % (len(rows), args.seed,
                                                              ", stage %s" % args.stage if args.stage else ""), ""]
    out += B.machine_lines(["binary:    %s" % os.environ.get("PROCTOR_BIN", "(release build)")])
    out += ["", "SIGKILL of the supervisor, then `proctor run --resume --iterations 1`; SIGKILL of a launcher helper",
            "or a sandbox's init (the run goes on). Checked after each: rows contiguous and equal to the records,",
            "keeps on the branch in order, tip = last keep, tree = tip, locked files unchanged, no process left,",
            "both locks free; and the rows recorded before the kill unchanged.", ""]
    out += B.table(["stage", "targeted", "hit", "failed"], table)
    out += ["", "%d kills in %.0f s (%.1f s per kill); %d failures" % (len(rows), seconds, seconds / max(1, len(rows)),
                                                                      len(failures))]
    out += ["  " + f for f in failures[:50]]
    if failures:
        out += ["reproduce one: bash bench/crash.sh --seed %d --kill K (K from the lines above)" % args.seed]
    B.emit("crash", out)


if __name__ == "__main__":
    main()
