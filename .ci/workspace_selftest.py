#!/usr/bin/env python3
"""Self-test of the bundled example workspace (workspace/), outside any sandbox.

Copies the workspace to a temporary directory, checks that `--split` is deterministic
for a fixed seed, runs train.py and the evaluator, then feeds the evaluator the outputs a
cheating or broken experiment could write and checks that each one gets no score
(exit 2, no JSON line, nothing from the holdout in the output).

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


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    tmp = tempfile.mkdtemp(prefix="proctor-ws-")
    try:
        ws = os.path.join(tmp, "ws")
        shutil.copytree(SRC, ws, ignore=shutil.ignore_patterns("outputs", "__pycache__", ".proctor"))
        holdout = open(os.path.join(ws, "holdout", "test_labels.csv")).read()

        # --split: deterministic for a fixed seed, and small.
        ws2 = os.path.join(tmp, "ws2")
        shutil.copytree(ws, ws2)
        for w in (ws2,):
            r1 = run(w, PY, "prepare.py", "--split", "--seed", "7")
            a = [digest(os.path.join(w, p)) for p in ("data/train.csv", "data/test_features.csv", "holdout/test_labels.csv")]
            r2 = run(w, PY, "prepare.py", "--split", "--seed", "7")
            b = [digest(os.path.join(w, p)) for p in ("data/train.csv", "data/test_features.csv", "holdout/test_labels.csv")]
            check("split is deterministic for a fixed seed", r1.returncode == 0 and r2.returncode == 0 and a == b,
                  r1.stderr + r2.stderr)
            check("split prints no seed", "7" not in r1.stdout.replace("597", "").replace("1200", ""), r1.stdout)
        size = sum(os.path.getsize(os.path.join(d, f)) for sub in ("data", "holdout")
                   for d, _, fs in os.walk(os.path.join(ws, sub)) for f in fs)
        check("data + holdout under 1 MiB", size < 1 << 20, str(size))

        # An honest run scores, with measured features and trees.
        r = run(ws, PY, "train.py", env={"PROCTOR_SEED": "42"})
        check("train.py runs", r.returncode == 0, r.stderr[-2000:])
        s = score(ws)
        ok = s.returncode == 0
        result = json.loads(s.stdout.strip().splitlines()[-1]) if ok else {}
        check("evaluator scores an honest run", ok and set(result) == {"auc", "features", "trees"}
              and 0.5 < result["auc"] <= 1.0 and result["features"] == 64, s.stdout + s.stderr)
        print("     baseline seed 42: %s" % json.dumps(result))
        out = os.path.join(ws, "outputs")
        good_pred = open(os.path.join(out, "predictions.csv")).read()
        good_model = open(os.path.join(out, "model.txt")).read()

        # Same seed, same score (the multi-seed gates assume it).
        run(ws, PY, "train.py", env={"PROCTOR_SEED": "42"})
        s2 = score(ws)
        check("same seed, same score", s2.stdout == s.stdout, s2.stdout)

        lines = good_pred.splitlines()

        def bad_pred(text):
            with open(os.path.join(out, "predictions.csv"), "w") as f:
                f.write(text)

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
        for name, text in cases.items():
            bad_pred(text)
            expect_rejected(name, score(ws), holdout)
        bad_pred(good_pred)

        def bad_model(text):
            with open(os.path.join(out, "model.txt"), "w") as f:
                f.write(text)

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
            bad_model(text)
            expect_rejected(name, score(ws), holdout)
        bad_model(good_model)

        # Files that are not regular files.
        pred = os.path.join(out, "predictions.csv")
        os.remove(pred)
        os.symlink(os.path.join(ws, "holdout", "test_labels.csv"), pred)
        expect_rejected("predictions.csv a symlink to the holdout", score(ws), holdout)
        os.remove(pred)
        os.mkfifo(pred)
        expect_rejected("predictions.csv a FIFO", score(ws), holdout)
        os.remove(pred)
        expect_rejected("predictions.csv missing", score(ws), holdout)
        with open(pred, "w") as f:
            f.write("id,prediction\n" + "0," * (1 << 20))
        expect_rejected("predictions.csv too large", score(ws), holdout)
        bad_pred(good_pred)

        # Planted modules next to the outputs or in the workspace are not imported.
        for d in (out, ws):
            with open(os.path.join(d, "numpy.py"), "w") as f:
                f.write("raise SystemExit('planted numpy imported')\n")
            with open(os.path.join(d, "sitecustomize.py"), "w") as f:
                f.write("raise SystemExit('planted sitecustomize imported')\n")
        s3 = score(ws)
        check("planted numpy.py/sitecustomize.py are not imported", s3.stdout == s.stdout, s3.stdout + s3.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("workspace self-test: %s" % ("FAILED: " + ", ".join(failures) if failures else "all passed"))
    return 1 if failures else 0


def expect_rejected(name, r, holdout):
    rows = holdout.splitlines()[1:6]
    leaked = any(row in r.stdout or row in r.stderr for row in rows)
    ok = r.returncode == 2 and '"auc"' not in r.stdout and not leaked and "no score" in r.stderr
    check("rejects " + name, ok, "rc=%d %s %s" % (r.returncode, r.stdout[-300:], r.stderr[-300:]))


if __name__ == "__main__":
    sys.exit(main())
