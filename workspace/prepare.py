"""Data preparation and the LOCKED evaluator of this workspace. Do not edit.

The task: 8x8 scans of handwritten digits (scikit-learn's bundled `load_digits`),
anonymised (pixel columns shuffled and rescaled). Predict whether the digit is ODD.
A fifth of the TRAINING labels are wrong (careless annotators); the held-out test
labels are clean. Metric: ROC AUC on the held-out test set, higher is better.

The 1797 digits are split three ways, without overlap: the training set (data/train.csv,
noisy labels), the test set (features in data/test_features.csv, clean labels in
holdout/, which the loop scores every experiment on) and the sealed set (features in
data/sealed_features.csv, clean labels in sealed/, scored only on kept experiments and
never shown to the agent: how much did the loop overfit the holdout).

    python3 prepare.py --split [--seed N]   (re)write data/, holdout/ and sealed/
    python3 prepare.py --score              score outputs/ against the holdout
    python3 prepare.py --score-sealed       score outputs/ against the sealed set

`--split` draws the split, the anonymisation and the label noise from --seed, or from
the operating system's randomness when no seed is given (the seed is never stored or
printed, so neither the holdout nor the sealed labels can be rebuilt from this file and
the public data set).

`--score` reads only plain files: `outputs/predictions.csv` (header `id,prediction`,
one row per test id, a probability in [0, 1]), `outputs/sealed_predictions.csv` (the
same, one row per id of data/sealed_features.csv) and `outputs/model.txt` (a LightGBM
text model over the columns of data/test_features.csv, selected by name). It
recomputes the model's predictions itself, refuses predictions the model does not
reproduce (the sealed ones included, so that every scored experiment can be
sealed-scored too; their labels are not read), and prints a JSON object as its last line:

    {"auc": 0.987654, "features": 64, "trees": 180}

where `features` (input features of the model) and `trees` are measured from the model
file. Invalid outputs exit with status 2 and a message on stderr, and print no score.

`--score-sealed` does the same over the sealed set (`outputs/sealed_predictions.csv`
and `outputs/model.txt` against sealed/) and prints the same JSON line. It never reads
holdout/, and `--score` never reads sealed/: each evaluator's sandbox holds only its own.
"""

# Only the standard library and numpy; nothing is imported from the workspace or from
# outputs/. `os` and `sys` are frozen/built-in modules, so they cannot be shadowed.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [
    p for p in sys.path
    if p not in ("", ".") and os.path.abspath(p) not in (_HERE, os.getcwd())
]

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # no BLAS thread pool: the evaluator is sandboxed too
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import stat  # noqa: E402

import numpy as np  # noqa: E402

DATA_DIR = "data"
HOLDOUT_DIR = "holdout"
SEALED_DIR = "sealed"
TRAIN_CSV = os.path.join(DATA_DIR, "train.csv")
TEST_CSV = os.path.join(DATA_DIR, "test_features.csv")
LABELS_CSV = os.path.join(HOLDOUT_DIR, "test_labels.csv")
SEALED_CSV = os.path.join(DATA_DIR, "sealed_features.csv")
SEALED_LABELS_CSV = os.path.join(SEALED_DIR, "labels.csv")
PREDICTIONS = "predictions.csv"
SEALED_PREDICTIONS = "sealed_predictions.csv"

N_TEST = 500               # of 1797 digits
N_SEALED = 297             # the rest (1000) is the training set
LABEL_NOISE = 0.20         # fraction of training labels flipped
MAX_PREDICTIONS_BYTES = 1 << 20
MAX_MODEL_BYTES = 64 << 20
MAX_TREES = 100_000        # far above any sane [limits] trees; bounds the evaluator's work
MATCH_TOLERANCE = 1e-6     # |predictions.csv - model prediction|
K_ZERO_THRESHOLD = 1e-35   # LightGBM's kZeroThreshold


class Invalid(Exception):
    """The experiment's outputs cannot be scored. The message never quotes file content."""


# --------------------------------------------------------------------------- split

def split(seed):
    from sklearn.datasets import load_digits  # only needed here, never when scoring

    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    rng = np.random.default_rng(seed)
    pixels, digits = load_digits(return_X_y=True)
    pixels = pixels.astype(np.int64)
    n, d = pixels.shape

    # Anonymise: shuffle the pixel columns, map each through a random increasing affine
    # map (trees do not care), shuffle the rows.
    cols = rng.permutation(d)
    scale = rng.integers(1, 4, size=d)
    offset = rng.integers(0, 21, size=d)
    features = pixels[:, cols] * scale + offset
    label = (digits % 2 == 1).astype(np.int64)
    rows = rng.permutation(n)
    features, label = features[rows], label[rows]

    # Three disjoint blocks of the shuffled rows: test, sealed, train.
    test = slice(0, N_TEST)
    sealed = slice(N_TEST, N_TEST + N_SEALED)
    train = slice(N_TEST + N_SEALED, n)
    noisy = label[train].copy()
    flip = rng.random(len(noisy)) < LABEL_NOISE
    noisy[flip] = 1 - noisy[flip]
    # Test and sealed ids from one draw: distinct, and an id does not tell its set.
    ids = rng.permutation(np.arange(100_000, 1_000_000))[:N_TEST + N_SEALED]
    test_ids, sealed_ids = ids[:N_TEST], ids[N_TEST:]

    names = ["f%02d" % j for j in range(d)]
    for directory in (DATA_DIR, HOLDOUT_DIR, SEALED_DIR):
        os.makedirs(directory, exist_ok=True)
    _write_csv(TRAIN_CSV, names + ["label"],
               np.column_stack([features[train], noisy]))
    # Rows by id, so that the order says nothing about the shuffle.
    for ids_, rows_, features_csv, labels_csv in ((test_ids, test, TEST_CSV, LABELS_CSV),
                                                  (sealed_ids, sealed, SEALED_CSV, SEALED_LABELS_CSV)):
        order = np.argsort(ids_)
        _write_csv(features_csv, ["id"] + names,
                   np.column_stack([ids_, features[rows_]])[order])
        _write_csv(labels_csv, ["id", "label"],
                   np.column_stack([ids_, label[rows_]])[order])
    print("wrote %s (%d rows), %s (%d rows), %s, %s (%d rows), %s"
          % (TRAIN_CSV, n - N_TEST - N_SEALED, TEST_CSV, N_TEST, LABELS_CSV,
             SEALED_CSV, N_SEALED, SEALED_LABELS_CSV))


def _write_csv(path, header, values):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(values.tolist())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- reading

def _read_untrusted(path, limit):
    """Bytes of a regular file written by the experiment: no symlinks, bounded size."""
    if os.path.islink(os.path.dirname(path) or "."):
        raise Invalid("%s: its directory is a symlink" % path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise Invalid("%s: missing" % path) from None
    except OSError as e:
        raise Invalid("%s: cannot open (%s)" % (path, os.strerror(e.errno))) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Invalid("%s: not a regular file" % path)
        if st.st_size > limit:
            raise Invalid("%s: larger than %d bytes" % (path, limit))
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise Invalid("%s: larger than %d bytes" % (path, limit))
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("ascii")
    except UnicodeDecodeError:
        raise Invalid("%s: not ASCII text" % path) from None


def _read_trusted_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def load_features(path):
    """Ids, column names and features of data/test_features.csv or data/sealed_features.csv."""
    header, rows = _read_trusted_csv(path)
    if header[0] != "id":
        sys.exit("prepare.py: %s is damaged" % path)
    ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
    x = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64)
    return ids, header[1:], x


def load_labels(path, ids, features_path):
    header, rows = _read_trusted_csv(path)
    by_id = {int(r[0]): int(r[1]) for r in rows}
    if header != ["id", "label"] or sorted(by_id) != sorted(ids.tolist()):
        sys.exit("prepare.py: %s does not match %s" % (path, features_path))
    return np.array([by_id[i] for i in ids.tolist()], dtype=np.int64)


def load_predictions(path, ids):
    text = _read_untrusted(path, MAX_PREDICTIONS_BYTES)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise Invalid("%s: empty" % path) from None
    except csv.Error:
        raise Invalid("%s: line 1: not CSV" % path) from None
    if [h.strip() for h in header] != ["id", "prediction"]:
        raise Invalid("%s: line 1: the header must be exactly id,prediction" % path)
    wanted = {int(i): k for k, i in enumerate(ids.tolist())}
    out = np.full(len(ids), np.nan)
    seen = 0
    try:
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise Invalid("%s: line %d: expected 2 fields" % (path, line))
            try:
                i = int(row[0])
                p = float(row[1])
            except ValueError:
                raise Invalid("%s: line %d: not an integer id and a number" % (path, line)) from None
            k = wanted.get(i)
            if k is None:
                raise Invalid("%s: line %d: unknown id" % (path, line))
            if not math.isnan(out[k]):
                raise Invalid("%s: line %d: duplicate id" % (path, line))
            if not (0.0 <= p <= 1.0):  # also rejects nan and inf
                raise Invalid("%s: line %d: prediction is not a probability in [0, 1]" % (path, line))
            out[k] = p
            seen += 1
    except csv.Error:
        raise Invalid("%s: not CSV" % path) from None
    if seen != len(ids):
        raise Invalid("%s: %d of %d ids predicted" % (path, seen, len(ids)))
    return out


# --------------------------------------------------------------------------- model

def _numbers(value, kind, what, count=None):
    try:
        arr = np.array([kind(v) for v in value.split()], dtype=np.float64 if kind is float else np.int64)
    except (ValueError, OverflowError):
        raise Invalid("model.txt: %s: not a list of numbers" % what) from None
    if count is not None and len(arr) != count:
        raise Invalid("model.txt: %s: expected %d values" % (what, count))
    if kind is float and not np.all(np.isfinite(arr)):
        raise Invalid("model.txt: %s: non-finite value" % what)
    return arr


class Tree:
    def __init__(self, fields, n_features, where):
        def need(key):
            if key not in fields:
                raise Invalid("model.txt: %s: missing %s" % (where, key))
            return fields[key]

        try:
            num_leaves = int(need("num_leaves"))
            num_cat = int(fields.get("num_cat", "0"))
        except ValueError:
            raise Invalid("model.txt: %s: bad num_leaves" % where) from None
        if num_leaves < 1 or num_leaves > 1 << 20:
            raise Invalid("model.txt: %s: bad num_leaves" % where)
        if num_cat != 0:
            raise Invalid("model.txt: %s: categorical splits are not supported" % where)
        if fields.get("is_linear", "0") != "0":
            raise Invalid("model.txt: %s: linear trees are not supported" % where)
        self.leaf_value = _numbers(need("leaf_value"), float, where + " leaf_value", num_leaves)
        inner = num_leaves - 1
        if inner == 0:
            self.feature = np.zeros(0, dtype=np.int64)
            return
        self.feature = _numbers(need("split_feature"), int, where + " split_feature", inner)
        self.threshold = _numbers(need("threshold"), float, where + " threshold", inner)
        self.decision = _numbers(need("decision_type"), int, where + " decision_type", inner)
        self.left = _numbers(need("left_child"), int, where + " left_child", inner)
        self.right = _numbers(need("right_child"), int, where + " right_child", inner)
        if np.any((self.feature < 0) | (self.feature >= n_features)):
            raise Invalid("model.txt: %s: split on an unknown feature" % where)
        if np.any((self.decision < 0) | (self.decision > 15)) or np.any(self.decision & 1):
            raise Invalid("model.txt: %s: unsupported decision_type" % where)
        for child in (self.left, self.right):
            if np.any((child >= inner) | (child < -num_leaves)):
                raise Invalid("model.txt: %s: child index out of range" % where)
        # Every node and leaf reached exactly once from the root: a tree, not a cycle.
        refs = np.concatenate([self.left, self.right])
        nodes, leaves = refs[refs >= 0], ~refs[refs < 0]
        if (len(np.unique(nodes)) != inner - 1 or np.any(nodes == 0)
                or len(np.unique(leaves)) != num_leaves):
            raise Invalid("model.txt: %s: not a tree" % where)

    def predict(self, x):
        """Leaf values for rows x (columns in the model's feature order), as LightGBM's
        NumericalDecision does it (double precision, missing values by decision_type)."""
        n = len(x)
        if len(self.feature) == 0:
            return np.full(n, self.leaf_value[0])
        node = np.zeros(n, dtype=np.int64)
        rows = np.arange(n)
        for _ in range(len(self.feature) + 1):
            live = node >= 0
            if not live.any():
                break
            r, k = rows[live], node[live]
            fval = x[r, self.feature[k]]
            dec = self.decision[k]
            default_left = (dec >> 1) & 1 == 1
            missing = (dec >> 2) & 3  # 0 none, 1 zero, 2 nan
            isnan = np.isnan(fval)
            fval = np.where(isnan & (missing != 2), 0.0, fval)
            to_default = ((missing == 1) & (np.abs(fval) <= K_ZERO_THRESHOLD)) | ((missing == 2) & isnan)
            go_left = np.where(to_default, default_left, fval <= self.threshold[k])
            node[live] = np.where(go_left, self.left[k], self.right[k])
        if np.any(node >= 0):
            raise Invalid("model.txt: a tree deeper than its node count")
        return self.leaf_value[~node]


def load_model(path, test_columns):
    """(trees, columns, sigmoid, average): the model over test_columns, chosen by name."""
    text = _read_untrusted(path, MAX_MODEL_BYTES)
    lines = text.splitlines()
    header, pos = {}, 0
    while pos < len(lines) and not lines[pos].startswith("Tree="):
        key, sep, value = lines[pos].partition("=")
        if sep:
            header[key.strip()] = value.strip()
        elif key.strip():
            header[key.strip()] = ""
        pos += 1
    if header.get("tree", None) != "" or not header.get("version", "").startswith("v"):
        raise Invalid("model.txt: not a LightGBM text model")
    if header.get("num_class") != "1" or header.get("num_tree_per_iteration") != "1":
        raise Invalid("model.txt: not a binary model (num_class must be 1)")
    objective = header.get("objective", "").split()
    if objective[:1] == ["binary"]:
        sig = [o for o in objective[1:] if o.startswith("sigmoid:")]
        try:
            sigmoid = float(sig[0].split(":", 1)[1]) if sig else 1.0
        except ValueError:
            raise Invalid("model.txt: bad objective") from None
        if not (math.isfinite(sigmoid) and sigmoid > 0):
            raise Invalid("model.txt: bad objective")
    elif objective[:1] in (["cross_entropy"], ["xentropy"]):
        sigmoid = 1.0
    else:
        raise Invalid("model.txt: the objective must be binary or cross_entropy")

    names = header.get("feature_names", "").split()
    try:
        n_features = int(header.get("max_feature_idx", "")) + 1
    except ValueError:
        raise Invalid("model.txt: bad max_feature_idx") from None
    if n_features != len(names) or n_features < 1:
        raise Invalid("model.txt: feature_names does not match max_feature_idx")
    column = {name: j for j, name in enumerate(test_columns)}
    if len(set(names)) != len(names) or any(nm not in column for nm in names):
        raise Invalid("model.txt: the model's features must be columns of %s, by name" % TEST_CSV)
    columns = np.array([column[nm] for nm in names], dtype=np.int64)

    trees, fields, where = [], None, ""
    for line in lines[pos:]:
        if line.startswith("Tree=") or line.startswith("end of trees"):
            if fields is not None:
                trees.append(Tree(fields, n_features, where))
                if len(trees) > MAX_TREES:
                    raise Invalid("model.txt: more than %d trees" % MAX_TREES)
            if line.startswith("end of trees"):
                break
            fields, where = {}, line.strip()[:20]
        elif fields is not None:
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value
    else:
        raise Invalid("model.txt: truncated (no 'end of trees')")
    if not trees:
        raise Invalid("model.txt: no trees")
    return trees, columns, sigmoid, "average_output" in header


def model_predictions(trees, columns, sigmoid, average, x_test):
    x = x_test[:, columns]
    raw = np.zeros(len(x))
    for tree in trees:
        raw += tree.predict(x)
    if average:
        raw /= len(trees)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-sigmoid * raw))


def roc_auc(labels, scores):
    """Mann-Whitney AUC with average ranks for ties."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def reproduced(outputs, name, ids, x, model):
    """The model's predictions over x, once outputs/name is shown to hold them, one per id."""
    predictions = load_predictions(os.path.join(outputs, name), ids)
    recomputed = model_predictions(*model, x)
    gap = float(np.max(np.abs(recomputed - predictions)))
    if not gap <= MATCH_TOLERANCE:
        raise Invalid("%s is not what model.txt predicts (max difference %.3g)" % (name, gap))
    return recomputed


def score(outputs, sealed):
    """--score (sealed=False): the test set against holdout/; --score-sealed: the sealed set
    against sealed/. Each reads only its own labels."""
    if sealed:
        features_csv, name = SEALED_CSV, SEALED_PREDICTIONS
    else:
        features_csv, name = TEST_CSV, PREDICTIONS
    ids, names, x = load_features(features_csv)
    model = load_model(os.path.join(outputs, "model.txt"), names)
    trees, columns = model[0], model[1]
    recomputed = reproduced(outputs, name, ids, x, model)
    if sealed:
        labels = load_labels(SEALED_LABELS_CSV, ids, features_csv)
    else:
        # The sealed predictions must be there and be the model's too (only the features are
        # read, never a sealed label): every experiment scored here can be sealed-scored.
        sealed_ids, sealed_names, sealed_x = load_features(SEALED_CSV)
        if sealed_names != names:
            sys.exit("prepare.py: %s and %s have different columns" % (SEALED_CSV, TEST_CSV))
        reproduced(outputs, SEALED_PREDICTIONS, sealed_ids, sealed_x, model)
        labels = load_labels(LABELS_CSV, ids, features_csv)
    used = len(np.unique(np.concatenate([t.feature for t in trees])))
    auc = roc_auc(labels, recomputed)
    print("model: %d trees, %d input features (%d used); predictions reproduced"
          % (len(trees), len(columns), used))
    print(json.dumps({"auc": round(float(auc), 6), "features": int(len(columns)), "trees": len(trees)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--split", action="store_true", help="(re)write data/, holdout/ and sealed/")
    mode.add_argument("--score", action="store_true", help="score the experiment's outputs on the test set")
    mode.add_argument("--score-sealed", action="store_true",
                      help="score the experiment's outputs on the sealed set")
    ap.add_argument("--seed", type=int, help="with --split: a fixed seed (default: random, never stored)")
    ap.add_argument("--outputs", default=os.environ.get("PROCTOR_OUTPUTS") or "outputs",
                    help="with --score or --score-sealed: the outputs directory "
                         "(default $PROCTOR_OUTPUTS or outputs)")
    args = ap.parse_args()
    if args.split:
        split(args.seed)
        return
    try:
        score(args.outputs, sealed=args.score_sealed)
    except Invalid as e:
        print("prepare.py: no score: %s" % e, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
