#!/usr/bin/env python3
"""The search agent against the mutate agent and Optuna's TPESampler, on three objectives:

- `bundled`: the bundled workspace (workspace/, LightGBM on digits, AUC, 7 knobs);
- `smooth`: a deterministic objective built here, with interacting knobs (a Rosenbrock valley
  across three floats, a log-scale rate whose best value moves with one of them, an int, a
  choice and a bool);
- `noisy`: a trading-like objective built here, noisy from seed to seed, with a hard `-inf`
  region (too much leverage for the volatility: the account is wiped out) next to the optimum.

`search` (tpe) and `mutate` run inside proctor (`proctor run --agent ...` on a fresh workspace,
sandboxed, with the workspace's multi-seed gate); Optuna's TPESampler runs outside proctor, a
tiny ask/tell loop that writes the knobs into a scratch copy of the same workspace and runs the
same experiment and evaluator commands on seed 42. One evaluation = one configuration measured
(an iteration; the baseline is the first, and Optuna's first trial is the same baseline
configuration, enqueued). Same budget, repetitions and seeds for each method: Optuna's sampler
and proctor's agents (`[agent] seed`) draw from the repetition's number (proctor's gate still
confirms on fresh seeds of each run's own, so a noisy row repeats only up to the first confirmation
that they change); the synthetic objectives' noise is salted by the repetition too.

Reported per objective and method: the median (over repetitions) of the best score measured
after 10, 30 and 100 evaluations, and the median number of evaluations to reach 99% of the way
from the baseline to the best score any method found (`>N`: not reached within the budget).
A configuration that failed, timed out or broke a limit counts as no score.

Beside those, what a user ends the run with: the configuration each method would hand over (the
`proctor` workspace's kept head; Optuna's best trial) measured again outside proctor on seeds none
of them saw (RESCORE_SEEDS), the median of its mean. The best seed-42 score rewards a configuration
that was lucky on seed 42, and only Optuna chases seed 42 alone (proctor's gate keeps by the mean
over its confirmation seeds); the unseen seeds read which method found the better configuration.

Run through bench/search.sh (installs Optuna in a virtual environment of its own), or directly:
PROCTOR_BIN=... OPTUNA_PYTHON=... python3 bench/search.py [--reps 5] [--budget 100] [--objectives ...]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

BUDGETS = (10, 30, 100)
# The seeds the chosen configurations are measured on afterwards: none of the methods saw them
# (Optuna and the experiments' first run use 42; proctor's confirmation seeds are fresh draws).
RESCORE_SEEDS = (1001, 1002, 1003, 1004, 1005)

SYNTHETIC_TOML = B.FILES_TOML.replace("%", "%%") + """
[experiment]
command = ["python3", "train.py"]
timeout = "20s"
seeds   = [42]

[evaluator]
command   = ["python3", "prepare.py"]
metric    = "score"
direction = "maximize"

[gates]
min_improvement = %(min_improvement)s
confirm_seeds   = %(confirm)s

[agent]
kind = "mutate"
"""

# The experiment writes its knobs' objective (and, for the noisy one, its seed's noise) to outputs/;
# the evaluator prints it. NOISE_SALT is set per repetition by the benchmark, not a knob.
SMOOTH_PY = """\
import json, math, os

A = 0.0  # mutate: float -2.0..2.0 linear
B = 0.0  # mutate: float -2.0..2.0 linear
C = 0.0  # mutate: float -2.0..2.0 linear
RATE = 0.1  # mutate: float 1e-4..1.0 log
DEPTH = 2  # mutate: int 1..64 log
KIND = "a"  # mutate: choice a|b|c
FLAG = False  # mutate: bool

valley = 100 * (B - A * A) ** 2 + (1 - A) ** 2 + 100 * (C - B * B) ** 2 + (1 - B) ** 2
rate = (math.log10(RATE) + 2 - 0.5 * (A - 1)) ** 2  # the best rate moves with A
depth = 0.5 * (math.log2(DEPTH) - 3) ** 2
loss = valley + rate + depth + {"a": 0.5, "b": 0.0, "c": 1.0}[KIND] + (0.0 if FLAG else 0.3)
out = os.environ.get("PROCTOR_OUTPUTS") or "outputs"
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "score.json"), "w") as f:
    json.dump({"score": -math.log1p(loss)}, f)
"""

NOISY_PY = """\
import hashlib, json, math, os, random

ENTRY = 0.5  # mutate: float 0.0..1.0 linear
EXIT = 0.5  # mutate: float 0.0..1.0 linear
LEVERAGE = 2.0  # mutate: float 1.0..100.0 log
WINDOW = 10  # mutate: int 2..200 log
MODE = "trend"  # mutate: choice trend|revert|both
NOISE_SALT = 0

SEED = int(os.environ.get("PROCTOR_SEED", "42"))
edge = 1 - 4 * ((ENTRY - 0.7) ** 2 + (EXIT - 0.3) ** 2) - 0.3 * math.log(WINDOW / 30) ** 2
edge += {"trend": 0.1, "revert": 0.0, "both": 0.25}[MODE] - 2 * (ENTRY - 0.7) * (EXIT - 0.3)
volatility = 0.5 + ENTRY
key = repr((SEED, NOISE_SALT, ENTRY, EXIT, LEVERAGE, WINDOW, MODE)).encode()
noise = random.Random(hashlib.sha256(key).hexdigest()).gauss(0, 0.15)
if math.log10(LEVERAGE) * volatility > 1.5:
    score = float("-inf")  # wiped out: the hard region, right next to the best leverage
else:
    score = (edge + noise) * math.log10(LEVERAGE) * 2
out = os.environ.get("PROCTOR_OUTPUTS") or "outputs"
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "score.json"), "w") as f:
    f.write(json.dumps({"score": score}))
"""

SYNTHETIC_PREPARE = """\
import json, os
out = os.environ.get("PROCTOR_OUTPUTS") or "outputs"
print(open(os.path.join(out, "score.json")).read().strip())
"""

OBJECTIVES = {
    "bundled": None,
    "smooth": {"train": SMOOTH_PY, "min_improvement": 0.0, "confirm": []},
    "noisy": {"train": NOISY_PY, "min_improvement": 0.05, "confirm": [17, 73]},
}

# A `# mutate:` line (the Optuna peer reads the knobs with it).
MARKER = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)( *= *)(\S+)(\s*#\s*mutate:\s*(.*))$")


def template(objective, root, rep):
    """The template directory of `objective` for repetition `rep`: proctor's agents draw from the
    repetition (`[agent] seed`), as Optuna's sampler does, so every row can be run again."""
    path = os.path.join(root, "template-%s-%d" % (objective, rep))
    if objective == "bundled":
        shutil.copytree(os.path.join(B.REPO, "workspace"), path)
        seed_agents(path, rep)
        return path
    spec = OBJECTIVES[objective]
    os.makedirs(path)
    files = {"proctor.toml": SYNTHETIC_TOML % {"min_improvement": spec["min_improvement"], "confirm": json.dumps(spec["confirm"])},
             "train.py": spec["train"].replace("NOISE_SALT = 0", "NOISE_SALT = %d" % rep),
             "prepare.py": SYNTHETIC_PREPARE, "program.md": "Maximize the score.\n", "LOG.md": ""}
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    seed_agents(path, rep)
    return path


def seed_agents(path, rep):
    """Sets `[agent] seed = rep` in the template's proctor.toml."""
    toml = os.path.join(path, "proctor.toml")
    with open(toml) as f:
        text = f.read()
    if text.count("\n[agent]\n") != 1:
        sys.exit("%s: expected one [agent] table" % toml)
    with open(toml, "w") as f:
        f.write(text.replace("\n[agent]\n", "\n[agent]\nseed = %d\n" % rep))


def commands(objective):
    if objective == "bundled":
        return ["python3", "train.py"], ["python3", "-I", "prepare.py", "--score"], "auc", 500
    return ["python3", "train.py"], ["python3", "prepare.py"], "score", None


def measure(directory, objective, seed):
    """The score of the configuration in `directory` on `seed`, outside proctor: the objective's
    experiment, then its evaluator. None when either fails, the score is nan or -inf, or the model
    is over the bundled workspace's [limits] trees (proctor rejects it too)."""
    experiment, evaluator, metric, limit = commands(objective)
    env = dict(os.environ, PROCTOR_SEED=str(seed), PROCTOR_OUTPUTS="outputs")
    os.makedirs(os.path.join(directory, "outputs"), exist_ok=True)
    if subprocess.run(experiment, cwd=directory, env=env, capture_output=True, timeout=120).returncode != 0:
        return None
    out = subprocess.run(evaluator, cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    result = json.loads(out.stdout.strip().split("\n")[-1])
    score = float(result[metric])
    if score != score or score == float("-inf") or (limit is not None and result.get("trees", 0) > limit):
        return None
    return score


def curve(scores, budget):
    """Best score after each evaluation (None: nothing scored yet)."""
    best, out = None, []
    for s in scores[:budget]:
        if s is not None and s == s and (best is None or s > best):
            best = s
        out.append(best)
    return out


# ----- the proctor methods --------------------------------------------------------------------

def run_proctor(agent, objective, tmpl, ws, budget, env):
    """Scores (maximized) of each evaluation of one `proctor run --agent AGENT`, baseline first."""
    init = subprocess.run([env["PROCTOR_BIN"], "init", ws, "--template", tmpl], env=env, capture_output=True, text=True)
    if init.returncode != 0:
        sys.exit("proctor init failed:\n" + init.stdout + init.stderr)
    # --wait: one experiment at a time on the machine (another proctor's run holds the machine lock).
    run = subprocess.run([env["PROCTOR_BIN"], "run", "--workspace", ws, "--iterations", str(budget - 1), "--agent", agent,
                          "--wait"], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit("proctor run (%s, %s) exited %d: %s" % (agent, objective, run.returncode, run.stderr.strip()[-400:]))
    # Each configuration's score on seed 42, the seed Optuna's peer measures: a kept configuration's
    # recorded score is its mean over the confirmation seeds too, which a best-of-N over single
    # draws would be compared unfairly with (the best single draw is biased upwards).
    scores = []
    with open(os.path.join(ws, ".proctor", "runs.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            ok = record["status"] in ("keep", "discard")
            score = next((s.get("score") for s in record.get("scores", []) if s.get("seed") == 42), None)
            scores.append(score if ok and isinstance(score, (int, float)) else None)
    return scores


# ----- Optuna's TPE, ask/tell, outside proctor ------------------------------------------------

OPTUNA_PEER = r'''
import json, os, sys
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
ws, budget, seed, objective, bench = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, bench)
from search import MARKER, measure  # the benchmark's own marker pattern and measurement
lines = open(os.path.join(ws, "train.py")).read().split("\n")
knobs, baseline = {}, {}
for index, line in enumerate(lines):
    m = MARKER.match(line)
    if not m:
        continue
    name, literal, spec = m.group(2), m.group(4), m.group(6).split()
    if spec[0] in ("int", "float"):
        lo, hi = spec[1].split("..")
        log = len(spec) > 2 and spec[2] == "log"
        dist = (optuna.distributions.IntDistribution(int(lo), int(hi), log=log) if spec[0] == "int"
                else optuna.distributions.FloatDistribution(float(lo), float(hi), log=log))
        baseline[name] = int(literal) if spec[0] == "int" else float(literal)
    elif spec[0] == "choice":
        options = spec[1].split("|")
        dist = optuna.distributions.CategoricalDistribution(options)
        baseline[name] = literal.strip("\"'")
    else:
        dist = optuna.distributions.CategoricalDistribution(["False", "True"])
        baseline[name] = literal
    knobs[name] = (index, m, spec[0], dist)
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
study.enqueue_trial(baseline)
def write(params):
    text = list(lines)
    for name, (index, m, kind, _) in knobs.items():
        value = params[name]
        literal = (repr(float(value)) if kind == "float" else str(value) if kind in ("int", "bool")
                   else (m.group(4)[0] + value + m.group(4)[0] if m.group(4)[0] in "\"'" else value))
        text[index] = m.group(1) + name + m.group(3) + literal + m.group(5)
    open(os.path.join(ws, "train.py"), "w").write("\n".join(text))
for _ in range(budget):
    trial = study.ask({name: k[3] for name, k in knobs.items()})
    write(trial.params)
    score = measure(ws, objective, 42)
    if score is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, score)
    print(json.dumps(score), flush=True)
# What Optuna hands over: its best trial's configuration (the baseline when nothing scored).
completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
write(study.best_trial.params if completed else baseline)
'''


def run_optuna(objective, tmpl, ws, budget, rep, python):
    shutil.copytree(tmpl, ws)
    peer = os.path.join(os.path.dirname(ws), "optuna_peer.py")
    with open(peer, "w") as f:
        f.write(OPTUNA_PEER)
    out = subprocess.run([python, peer, ws, str(budget), str(rep), objective, B.HERE], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("the Optuna peer failed:\n" + out.stderr[-2000:])
    return [json.loads(line) for line in out.stdout.split("\n") if line.strip()]


# ----- what each method hands over, on unseen seeds -------------------------------------------

def rescore(objective, tmpl, ws, root):
    """The mean score, on RESCORE_SEEDS, of the configuration `ws/train.py` holds after a run (None
    when one of them fails), measured outside proctor in a scratch copy of the template."""
    with open(os.path.join(ws, "train.py")) as f:
        chosen = f.read()
    scratch = os.path.join(root, "rescore")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(tmpl, scratch)
    with open(os.path.join(scratch, "train.py"), "w") as f:
        f.write(chosen)
    scores = []
    for seed in RESCORE_SEEDS:
        score = measure(scratch, objective, seed)
        if score is None:
            return None
        scores.append(score)
    return sum(scores) / len(scores)


# ----- the table ------------------------------------------------------------------------------

def table(results, budgets, budget, chosen):
    """Markdown rows: objective, method, median best at each budget, median evaluations to 99%,
    median score of the configuration handed over on the unseen seeds."""
    lines = ["| objective | method | " + " | ".join("best @%d" % b for b in budgets) + " | evals to 99%% | chosen @%d, unseen seeds |" % budget,
             "|---|---|" + "---|" * (len(budgets) + 2)]
    verdict = []
    for objective, methods in results.items():
        runs = [scores for reps in methods.values() for scores in reps]
        finite = [s for scores in runs for s in scores if s is not None and s != float("-inf")]
        best = max(finite)
        base = next((s for s in runs[0] if s is not None), best)
        target = base + 0.99 * (best - base)
        medians = {}
        for method, reps in methods.items():
            row = []
            for b in budgets:
                values = [c[min(b, len(c)) - 1] for c in (curve(s, b) for s in reps) if c]
                values = [v if v is not None else float("-inf") for v in values]
                medians[(method, b)] = B.median(values)
                row.append("%.4f" % medians[(method, b)])
            reach = []
            for scores in reps:
                hit = next((i + 1 for i, v in enumerate(curve(scores, budget)) if v is not None and v >= target), None)
                reach.append(hit if hit is not None else budget + 1)
            m = B.median(reach)
            row.append(">%d" % budget if m > budget else "%g" % m)
            row.append("%.4f" % B.median([v if v is not None else float("-inf") for v in chosen[objective][method]]))
            lines.append("| %s | %s | %s |" % (objective, method, " | ".join(row)))
        if "search" in methods:
            tpe_ok = all(medians[("search", b)] >= medians[("optuna-tpe", b)] for b in budgets) if "optuna-tpe" in methods else None
            mut_ok = medians[("search", 30)] > medians[("mutate", 30)] if "mutate" in methods and 30 in budgets else None
            verdict.append("%s: search >= Optuna TPE at every budget: %s; search > mutate at 30: %s"
                           % (objective, {True: "yes", False: "NO", None: "n/a"}[tpe_ok], {True: "yes", False: "NO", None: "n/a"}[mut_ok]))
    return lines, verdict


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--first-rep", type=int, default=0,
                    help="number of the first repetition (its seeds): more repetitions for a table run before, see --merge")
    ap.add_argument("--budget", type=int, default=100, help="evaluations per run (the baseline included)")
    ap.add_argument("--objectives", default="bundled,smooth,noisy")
    ap.add_argument("--methods", default="search,mutate,optuna-tpe")
    ap.add_argument("--bundled-budget", type=int, default=None, help="a smaller budget for the (slow) bundled workspace")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="run nothing: the table of the results saved in these .json files together (each objective's and "
                         "method's repetitions appended: methods run apart, or more repetitions with --first-rep)")
    ap.add_argument("--out", default=os.path.join(B.HERE, "results", "search-%s.md" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())))
    args = ap.parse_args()
    if args.merge:
        results, chosen, budget = merge(args.merge)
        write(args, results, chosen, budget, "merged from %s" % ", ".join(os.path.basename(p) for p in args.merge))
        return
    env = dict(os.environ)
    if "PROCTOR_BIN" not in env:
        sys.exit("set PROCTOR_BIN (bench/search.sh does)")
    python = env.get("OPTUNA_PYTHON", sys.executable)
    results, chosen = {}, {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="proctor-search-bench-") as root:
        # A machine lock of its own, like the other benches: the shared one would make every other
        # proctor on this machine (a demo, CI's report test) refuse while the benchmark runs.
        env["PROCTOR_MACHINE_LOCK"] = os.path.join(root, "machine.lock")
        for objective in args.objectives.split(","):
            budget = args.bundled_budget if objective == "bundled" and args.bundled_budget else args.budget
            results[objective] = {m: [] for m in args.methods.split(",")}
            chosen[objective] = {m: [] for m in args.methods.split(",")}
            for rep in range(args.first_rep, args.first_rep + args.reps):
                tmpl = template(objective, root, rep)
                for method in args.methods.split(","):
                    ws = os.path.join(root, "%s-%s-%d" % (objective, method, rep))
                    t0 = time.time()
                    if method == "optuna-tpe":
                        scores = run_optuna(objective, tmpl, ws, budget, rep, python)
                    else:
                        scores = run_proctor(method, objective, tmpl, ws, budget, env)
                    results[objective][method].append(scores)
                    chosen[objective][method].append(rescore(objective, tmpl, ws, root))
                    best = max((s for s in scores if s is not None), default=None)
                    B.log("%s %s rep %d: %d evaluations, best %s, chosen %s on unseen seeds (%.0fs)"
                          % (objective, method, rep, len(scores), best, chosen[objective][method][-1], time.time() - t0))
                    shutil.rmtree(ws, ignore_errors=True)
    write(args, results, chosen, args.budget, "from repetition %d, budget %d evaluations%s; methods %s; %.0f s in all" % (
        args.first_rep, args.budget, " (bundled: %d)" % args.bundled_budget if args.bundled_budget else "",
        args.methods, time.time() - started))


def merge(paths):
    """The results, handed-over scores and longest budget of several saved runs, each objective's and
    method's repetitions appended in the order of `paths`."""
    results, chosen, budget = {}, {}, 0
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        for objective, methods in saved["results"].items():
            for method, reps in methods.items():
                results.setdefault(objective, {}).setdefault(method, []).extend(reps)
                chosen.setdefault(objective, {}).setdefault(method, []).extend(saved["chosen"][objective][method])
                budget = max([budget] + [len(scores) for scores in reps])
    return results, chosen, budget


def write(args, results, chosen, budget, what):
    """The table and verdict to args.out (and stdout), the raw results beside it as .json."""
    budgets = sorted({min(b, budget) for b in BUDGETS})
    lines, verdict = table(results, budgets, budget, chosen)
    counts = sorted({len(reps) for methods in results.values() for reps in methods.values()})
    text = "\n".join(["# Search benchmark", "",
                      "%s; %s repetitions per method." % (what, "/".join(map(str, counts))),
                      "Medians over repetitions; a budget beyond a run's evaluations shows its best at the end.", ""]
                     + lines + ["", "Verdict, as measured:", ""] + ["- " + v for v in verdict] + [""]
                     + B.machine_lines())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results, "chosen": chosen}, f)
    print(text)


if __name__ == "__main__":
    main()
