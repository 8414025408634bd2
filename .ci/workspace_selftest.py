#!/usr/bin/env python3
"""Self-test of the bundled example workspace (workspace/), outside any sandbox.

Copies the workspace to a temporary directory, checks that `--split` is deterministic
for a fixed seed and draws three disjoint sets, runs train.py and both evaluators (`--score`
on the holdout, `--score-sealed` on the sealed set), then feeds each evaluator the outputs a
cheating or broken experiment could write and checks that each one gets no score (exit 2,
no JSON line, nothing from the holdout or the sealed labels in the output). Each evaluator
must also work without the other's labels (its sandbox does not hold them).

    python3 .ci/workspace_selftest.py [WORKSPACE]
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workspace"))
PY = sys.executable
failures = []


def check(name, ok, detail=""):
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, (": " + detail) if detail and not ok else ""))
    if not ok:
        failures.append(name)


def run(ws, *cmd, env=None):
    e = {"PATH": os.environ["PATH"], "LANG": os.environ.get("LANG", "C.UTF-8")}
    e.update(env or {})
    return subprocess.run(list(cmd), cwd=ws, env=e, capture_output=True, text=True, timeout=120)


def score(ws):
    return run(ws, PY, "-I", "prepare.py", "--score")


def score_sealed(ws):
    return run(ws, PY, "-I", "prepare.py", "--score-sealed")


SPLIT_FILES = ("data/train.csv", "data/test_features.csv", "holdout/test_labels.csv",
               "data/sealed_features.csv", "sealed/labels.csv")
SEED = "918273"  # distinctive: --split must not print it


def ids_of(path):
    with open(path) as f:
        return [line.split(",", 1)[0] for line in f.read().splitlines()[1:]]


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_split(w, what):
    """Three disjoint sets that partition the digits, each set's labels exactly its ids."""
    test_ids = ids_of(os.path.join(w, "data", "test_features.csv"))
    sealed_ids = ids_of(os.path.join(w, "data", "sealed_features.csv"))
    n_train = len(ids_of(os.path.join(w, "data", "train.csv")))
    check(what + ": test and sealed ids distinct and disjoint",
          len(set(test_ids)) == len(test_ids) and len(set(sealed_ids)) == len(sealed_ids)
          and not set(test_ids) & set(sealed_ids))
    check(what + ": labels cover exactly their features' ids",
          sorted(ids_of(os.path.join(w, "holdout", "test_labels.csv"))) == sorted(test_ids)
          and sorted(ids_of(os.path.join(w, "sealed", "labels.csv"))) == sorted(sealed_ids))
    check(what + ": train, test and sealed rows partition the 1797 digits",
          n_train + len(test_ids) + len(sealed_ids) == 1797 and len(test_ids) >= 400
          and len(sealed_ids) >= 250 and n_train >= 900,
          "%d + %d + %d" % (n_train, len(test_ids), len(sealed_ids)))


def main():
    tmp = tempfile.mkdtemp(prefix="proctor-ws-")
    try:
        ws = os.path.join(tmp, "ws")
        shutil.copytree(SRC, ws, ignore=shutil.ignore_patterns("outputs", "__pycache__", ".proctor"))
        labels = (open(os.path.join(ws, "holdout", "test_labels.csv")).read()
                  + open(os.path.join(ws, "sealed", "labels.csv")).read())

        # --split: deterministic for a fixed seed, three disjoint sets, and small.
        ws2 = os.path.join(tmp, "ws2")
        shutil.copytree(ws, ws2)
        r1 = run(ws2, PY, "prepare.py", "--split", "--seed", SEED)
        a = [digest(os.path.join(ws2, p)) for p in SPLIT_FILES]
        r2 = run(ws2, PY, "prepare.py", "--split", "--seed", SEED)
        b = [digest(os.path.join(ws2, p)) for p in SPLIT_FILES]
        check("split is deterministic for a fixed seed", r1.returncode == 0 and r2.returncode == 0 and a == b,
              r1.stderr + r2.stderr)
        check("split prints no seed", SEED not in r1.stdout + r1.stderr, r1.stdout)
        check("split differs from the shipped one",
              a != [digest(os.path.join(ws, p)) for p in SPLIT_FILES])
        check_split(ws2, "seeded split")
        check_split(ws, "shipped split")
        size = sum(os.path.getsize(os.path.join(d, f)) for sub in ("data", "holdout", "sealed")
                   for d, _, fs in os.walk(os.path.join(ws, sub)) for f in fs)
        check("data + holdout + sealed under 1 MiB", size < 1 << 20, str(size))

        # An honest run scores on both sets, with measured features and trees.
        r = run(ws, PY, "train.py", env={"PROCTOR_SEED": "42"})
        check("train.py runs", r.returncode == 0, r.stderr[-2000:])
        honest = {}
        for name, scorer in (("evaluator", score), ("sealed evaluator", score_sealed)):
            s = scorer(ws)
            ok = s.returncode == 0
            result = json.loads(s.stdout.strip().splitlines()[-1]) if ok else {}
            check(name + " scores an honest run", ok and set(result) == {"auc", "features", "trees"}
                  and 0.5 < result["auc"] <= 1.0 and result["features"] == 64, s.stdout + s.stderr)
            print("     %s, seed 42: %s" % (name, json.dumps(result)))
            honest[scorer] = s.stdout
        out = os.path.join(ws, "outputs")
        good = {f: open(os.path.join(out, f)).read()
                for f in ("predictions.csv", "sealed_predictions.csv", "model.txt")}

        # Same seed, same scores (the multi-seed gates assume it).
        run(ws, PY, "train.py", env={"PROCTOR_SEED": "42"})
        for scorer in (score, score_sealed):
            s2 = scorer(ws)
            check("same seed, same score (%s)" % scorer.__name__, s2.stdout == honest[scorer], s2.stdout)

        def write(name, text):
            with open(os.path.join(out, name), "w") as f:
                f.write(text)

        def restore():
            for f, text in good.items():
                if os.path.lexists(os.path.join(out, f)):
                    os.remove(os.path.join(out, f))  # a link or a FIFO is not written through
                write(f, text)

        # Each evaluator with the other's labels gone: it never reads them.
        for gone, scorer in (("holdout", score_sealed), ("sealed", score)):
            aside = os.path.join(tmp, gone + "-aside")
            os.rename(os.path.join(ws, gone), aside)
            try:
                s3 = scorer(ws)
            finally:
                os.rename(aside, os.path.join(ws, gone))
            check("%s works without %s/" % (scorer.__name__, gone), s3.stdout == honest[scorer], s3.stdout + s3.stderr)

        # Broken or cheating predictions: predictions.csv for --score, sealed_predictions.csv
        # for --score-sealed (and for --score too, which requires it to be the model's).
        for pred, scorers in (("predictions.csv", (score,)),
                              ("sealed_predictions.csv", (score, score_sealed))):
            good_pred = good[pred]
            lines = good_pred.splitlines()
            cases = {
                "header missing": "\n".join(lines[1:]) + "\n",
                "wrong header": "id,label\n" + "\n".join(lines[1:]) + "\n",
                "a row missing": "\n".join(lines[:-1]) + "\n",
                "an extra row": good_pred + "999,0.5\n",
                "a duplicate id": good_pred + lines[1] + "\n",
                "NaN": "\n".join(lines[:-1] + [lines[-1].split(",")[0] + ",nan"]) + "\n",
                "inf": "\n".join(lines[:-1] + [lines[-1].split(",")[0] + ",inf"]) + "\n",
                "not a number": "\n".join(lines[:-1] + [lines[-1].split(",")[0] + ",abc"]) + "\n",
                "out of [0, 1]": "\n".join(lines[:-1] + [lines[-1].split(",")[0] + ",1.5"]) + "\n",
                "three fields": "\n".join(lines[:-1] + [lines[-1] + ",1"]) + "\n",
                "binary garbage": "id,prediction\n\x00\xff\xfe\n",
                "other predictions than the model's": "\n".join(
                    [lines[0]] + ["%s,%.9f" % (l.split(",")[0], 1 - float(l.split(",")[1])) for l in lines[1:]]) + "\n",
            }
            # The other set's predictions in place of these: same format, other ids.
            other = good["predictions.csv" if pred != "predictions.csv" else "sealed_predictions.csv"]
            cases["the other set's predictions"] = other
            for name, text in cases.items():
                write(pred, text)
                for scorer in scorers:
                    expect_rejected("%s: %s %s" % (scorer.__name__, pred, name), scorer(ws), labels)
            restore()

            # Files that are not regular files.
            path = os.path.join(out, pred)
            for label_file in ("holdout/test_labels.csv", "sealed/labels.csv"):
                os.remove(path)
                os.symlink(os.path.join(ws, label_file), path)
                for scorer in scorers:
                    expect_rejected("%s: %s a symlink to %s" % (scorer.__name__, pred, label_file), scorer(ws), labels)
            os.remove(path)
            os.mkfifo(path)
            for scorer in scorers:
                expect_rejected("%s: %s a FIFO" % (scorer.__name__, pred), scorer(ws), labels)
            os.remove(path)
            for scorer in scorers:
                expect_rejected("%s: %s missing" % (scorer.__name__, pred), scorer(ws), labels)
            write(pred, "id,prediction\n" + "0," * (1 << 20))
            for scorer in scorers:
                expect_rejected("%s: %s too large" % (scorer.__name__, pred), scorer(ws), labels)
            restore()

        good_model = good["model.txt"]
        trees = good_model.split("Tree=")
        models = {
            "model: empty": "",
            "model: truncated": good_model[: len(good_model) // 2],
            "model: unknown feature name": good_model.replace("f00 ", "zz ", 1),
            "model: multiclass header": good_model.replace("num_class=1", "num_class=3", 1),
            "model: regression objective": good_model.replace("objective=binary", "objective=regression", 1),
            "model: a tree dropped": "Tree=".join(trees[:1] + trees[2:]),
            "model: a cycle": good_model.replace("left_child=", "left_child=0 ", 1),
            "model: a NaN leaf": good_model.replace("leaf_value=", "leaf_value=nan ", 1),
        }
        for name, text in models.items():
            write("model.txt", text)
            for scorer in (score, score_sealed):
                expect_rejected("%s: %s" % (scorer.__name__, name), scorer(ws), labels)
        restore()
        for scorer in (score, score_sealed):
            check("%s scores the restored outputs" % scorer.__name__, scorer(ws).stdout == honest[scorer])

        # Planted modules next to the outputs or in the workspace are not imported.
        for d in (out, ws):
            with open(os.path.join(d, "numpy.py"), "w") as f:
                f.write("raise SystemExit('planted numpy imported')\n")
            with open(os.path.join(d, "sitecustomize.py"), "w") as f:
                f.write("raise SystemExit('planted sitecustomize imported')\n")
        for scorer in (score, score_sealed):
            s3 = scorer(ws)
            check("%s: planted numpy.py/sitecustomize.py are not imported" % scorer.__name__,
                  s3.stdout == honest[scorer], s3.stdout + s3.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("workspace self-test: %s" % ("FAILED: " + ", ".join(failures) if failures else "all passed"))
    return 1 if failures else 0


def expect_rejected(name, r, labels):
    rows = [row for text in labels.split("id,label\n") for row in text.splitlines()[:5]]
    leaked = any(row in r.stdout or row in r.stderr for row in rows)
    ok = r.returncode == 2 and '"auc"' not in r.stdout and not leaked and "no score" in r.stderr
    check("rejects " + name, ok, "rc=%d %s %s" % (r.returncode, r.stdout[-300:], r.stderr[-300:]))


if __name__ == "__main__":
    sys.exit(main())
