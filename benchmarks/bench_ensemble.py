"""Fold ensemble against the single refit (``skcovid train --cv 5 --ensemble`` or not), blocked 5-fold.

``skcovid train --cv K`` scores K fold models and then saves either one model
refitted on all images (the default) or, with ``--ensemble``, the K fold
models under scikit-learn's ``VotingClassifier(voting="soft")``. Which
predicts new patients better is measured here by nesting that choice in an
outer cross-validation on the 2479 distinct SARS-CoV-2 slices:

- outer: ``BlockedStratifiedKFold(5, block_size=25)`` (blocks of 25
  consecutive slices per class stand in for patients);
- on each outer training set, as the command line does it: 5 inner folds
  over the same blocks (``StratifiedGroupKFold``) give the ensemble's
  members, and one fit on the whole outer training set is the refit;
- both are scored on the outer test fold, and the differences are paired
  by fold.

The model is the frozen EfficientNet-Lite0 with a linear head (``--size``
px, ``--epochs``, ``calibration="temperature"`` on 20% of each training set,
by block; features cached once for all 30 fits), the only one of skcovid's
models whose 30 fits take minutes on a CPU rather than hours.

Usage::

    python benchmarks/bench_ensemble.py [--size 128] [--epochs 30]

Prints each fold and a Markdown table (the one in docs/guide/model_selection.md).
"""

import argparse
import tempfile
import time

import numpy as np
from _slices import classifier, machine, real_slices
from sklearn.ensemble import VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedGroupKFold

from skcovid.metrics import bootstrap_calibration, bootstrap_scores
from skcovid.model_selection import BlockedStratifiedKFold

METRICS = ("accuracy", "f1", "roc_auc", "ece", "brier")


def _scores(model, X, y):
    proba = model.predict_proba(X)
    scores = bootstrap_scores(y, proba, model.classes_, n_bootstraps=0)
    calibration = bootstrap_calibration(y, proba, model.classes_, n_bootstraps=0)
    return {**{m: scores[m]["value"] for m in METRICS[:3]},
            **{m: calibration[m]["value"] for m in METRICS[3:]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--block-size", type=int, default=25)
    args = parser.parse_args()
    X, y = real_slices(data_dir=args.data_dir)
    outer = BlockedStratifiedKFold(5, block_size=args.block_size)
    blocks = outer.blocks(X, y)
    print(f"{machine()}; {len(X)} slices ({len(np.unique(blocks))} blocks of {args.block_size}), "
          f"{args.size} px, {args.epochs} epochs\n", flush=True)
    rows, start = {"refit": [], "ensemble": []}, time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        def model():
            return classifier(
                backbone="efficientnet_lite0", weights="DEFAULT", freeze="backbone", image_size=args.size,
                max_epochs=args.epochs, batch_size=32, early_stopping=None, validation_fraction=0.2,
                calibration="temperature", memory=cache, random_state=0)

        for fold, (train, test) in enumerate(outer.split(X, y)):
            X_train, y_train, groups = X[train], y[train], blocks[train]
            refit = model().fit(X_train, y_train, groups=groups)
            members = [model().fit(X_train[inner], y_train[inner], groups=groups[inner])
                       for inner, _ in StratifiedGroupKFold(5).split(X_train, y_train, groups)]
            ensemble = VotingClassifier([(f"fold_{i}", FrozenEstimator(m)) for i, m in enumerate(members)],
                                        voting="soft").fit(X_train, y_train)
            for name, fitted in (("refit", refit), ("ensemble", ensemble)):
                rows[name].append(_scores(fitted, X[test], y[test]))
                print(f"  fold {fold}, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[name][-1].items()),
                      flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s\n")
    print("| model | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, folds in rows.items():
        print(f"| {name} | " + " | ".join(
            f"{np.mean([f[m] for f in folds]):.4f} +/- {np.std([f[m] for f in folds]):.4f}" for m in METRICS) + " |")
    for m in METRICS:
        diff = [e[m] - r[m] for e, r in zip(rows["ensemble"], rows["refit"])]
        print(f"ensemble - refit, {m}: " + ", ".join(f"{d:+.4f}" for d in diff) + f" (mean {np.mean(diff):+.4f})")


if __name__ == "__main__":
    main()
