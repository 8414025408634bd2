"""The experiment: train a LightGBM model, write the model and its predictions for the test
and the sealed features.

This is the file the research agent edits. The task, the data and the evaluator are
described in program.md and prepare.py (locked). Run: python3 train.py
"""

import os
import sys
import time

# One thread: on 1000 rows OpenMP's synchronisation costs more than it saves (800 trees of
# 64 leaves: 1 s with one thread, 5-9 s with two on a busy 2-core machine). It also keeps
# the process count far below the sandbox's pids limit on machines with many cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import lightgbm as lgb
import numpy as np

# Hyper-parameters. The "mutate" marker comments tell proctor's built-in offline agent which
# constants it may change and within which range: kind, lo..hi, scale.
LEARNING_RATE = 0.3  # mutate: float 0.005..0.5 log
NUM_ROUNDS = 100  # mutate: int 20..800 log
NUM_LEAVES = 63  # mutate: int 4..128 log
MIN_DATA_IN_LEAF = 3  # mutate: int 1..100 log
FEATURE_FRACTION = 0.9  # mutate: float 0.2..1.0 linear
BAGGING_FRACTION = 0.9  # mutate: float 0.3..1.0 linear
LAMBDA_L2 = 0.01  # mutate: float 0.001..100 log

SEED = int(os.environ.get("PROCTOR_SEED", "42"))
OUTPUTS = os.environ.get("PROCTOR_OUTPUTS") or "outputs"


def read_csv(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return header, values


def read_features(path, names):
    header, values = read_csv(path)
    assert header[1:] == names, "train and %s columns differ" % path
    return values[:, 0].astype(np.int64), values[:, 1:]


def write_predictions(path, ids, p):
    with open(path, "w") as f:
        f.write("id,prediction\n")
        for i, v in zip(ids.tolist(), p.tolist()):
            f.write("%d,%.9f\n" % (i, v))


def main():
    t0 = time.time()
    header, train = read_csv(os.path.join("data", "train.csv"))
    names, x_train, y_train = header[:-1], train[:, :-1], train[:, -1]
    ids, x_test = read_features(os.path.join("data", "test_features.csv"), names)
    sealed_ids, x_sealed = read_features(os.path.join("data", "sealed_features.csv"), names)
    print("data: %d train rows, %d test rows, %d sealed rows, %d features; seed %d"
          % (len(x_train), len(x_test), len(x_sealed), len(names), SEED))

    params = {
        "objective": "binary",
        "learning_rate": LEARNING_RATE,
        "num_leaves": NUM_LEAVES,
        "min_data_in_leaf": MIN_DATA_IN_LEAF,
        "feature_fraction": FEATURE_FRACTION,
        "bagging_fraction": BAGGING_FRACTION,
        "bagging_freq": 1 if BAGGING_FRACTION < 1.0 else 0,
        "lambda_l2": LAMBDA_L2,
        "seed": SEED,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    data = lgb.Dataset(x_train, label=y_train, feature_name=names)
    booster = lgb.train(params, data, num_boost_round=NUM_ROUNDS)
    t1 = time.time()
    print("trained %d trees in %.2fs" % (booster.num_trees(), t1 - t0))

    os.makedirs(OUTPUTS, exist_ok=True)
    booster.save_model(os.path.join(OUTPUTS, "model.txt"))
    write_predictions(os.path.join(OUTPUTS, "predictions.csv"), ids, booster.predict(x_test))
    write_predictions(os.path.join(OUTPUTS, "sealed_predictions.csv"), sealed_ids, booster.predict(x_sealed))
    print("wrote model.txt, predictions.csv and sealed_predictions.csv to %s in %.2fs total"
          % (OUTPUTS, time.time() - t0))


if __name__ == "__main__":
    sys.exit(main())
