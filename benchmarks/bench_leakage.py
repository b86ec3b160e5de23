"""Random vs blocked 5-fold cross-validation on the SARS-CoV-2 slices: how much a random split flatters.

The slices carry no patient ids, but their file numbers follow the scans, so
neighbouring slices, near-copies of each other, fall on both sides of a random
split. Each model is scored twice on the 2479 distinct slices:

- ``random``: ``StratifiedKFold(5, shuffle=True, random_state=0)``;
- ``blocked``: ``BlockedStratifiedKFold(5, block_size=25)``, blocks of 25
  consecutive slices per class in the files' natural order (proxy patients),
  which also split each training set's validation part (``groups``).

The difference is the leakage. Models (``--models``):

- ``frozen``: pretrained EfficientNet-Lite0 frozen, a linear head (``--size``
  px, ``--frozen-epochs``; features cached once for all folds);
- ``fine-tuned``: the same network trained end to end (``--epochs``, lr 3e-4,
  ``augment="ct"``).

Each model is fitted with ``calibration="temperature"`` (the temperature fitted
on a validation split of 20% of the training folds, blocks kept whole with
the blocked split), so the figures also give the expected calibration error
(10 bins) before and after temperature scaling, and the Brier score.

Usage::

    python benchmarks/bench_leakage.py [--size 128] [--models frozen fine-tuned]

Prints a Markdown table (the one in docs/benchmarks.md).
"""

import argparse
import tempfile
import time

import numpy as np
from _slices import machine, real_slices
from sklearn.model_selection import StratifiedKFold

from skcovid import TransferCNNClassifier
from skcovid.metrics import bootstrap_calibration, bootstrap_scores
from skcovid.model_selection import BlockedStratifiedKFold

METRICS = ("accuracy", "f1", "roc_auc")


def _model(name, args, cache):
    common = dict(backbone="efficientnet_lite0", weights="DEFAULT", image_size=args.size, batch_size=32,
                  early_stopping=None, validation_fraction=0.2, calibration="temperature", random_state=0)
    if name == "frozen":
        return TransferCNNClassifier(freeze="backbone", max_epochs=args.frozen_epochs, memory=cache, **common)
    return TransferCNNClassifier(freeze="none", augment="ct", lr=3e-4, max_epochs=args.epochs, **common)


def _scores(y, proba, classes):
    scores = bootstrap_scores(y, proba, classes, n_bootstraps=0)
    calibration = bootstrap_calibration(y, proba, classes, n_bootstraps=0)
    return {**{m: scores[m]["value"] for m in METRICS},
            "ece": calibration["ece"]["value"], "brier": calibration["brier"]["value"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frozen-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=25)
    parser.add_argument("--models", nargs="+", default=["frozen", "fine-tuned"])
    args = parser.parse_args()
    X, y = real_slices(data_dir=args.data_dir)
    blocked = BlockedStratifiedKFold(5, block_size=args.block_size)
    splits = {"random": (StratifiedKFold(5, shuffle=True, random_state=0), None),
              "blocked": (blocked, blocked.blocks(X, y))}
    print(f"{machine()}; {len(X)} slices, {args.size} px; blocks of {args.block_size}\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models:
            for split, (cv, groups) in splits.items():
                folds, start = [], time.perf_counter()
                for train, test in cv.split(X, y):
                    clf = _model(name, args, cache).fit(
                        X[train], y[train], groups=None if groups is None else groups[train])
                    proba = clf.predict_proba(X[test])
                    temperature = clf.temperature_
                    clf.temperature_ = 1.0
                    raw = clf.predict_proba(X[test])
                    clf.temperature_ = temperature
                    folds.append({**_scores(y[test], proba, clf.classes_),
                                  "ece_before": _scores(y[test], raw, clf.classes_)["ece"],
                                  "temperature": temperature})
                rows.append((name, split, folds, time.perf_counter() - start))
                print(f"{name}, {split}: " + ", ".join(f"{k} {np.mean([f[k] for f in folds]):.4f}"
                                                       for k in folds[0]) + f" ({rows[-1][3]:.0f} s)",
                      flush=True)
    print("\n| model | split | accuracy | F1 | ROC-AUC | ECE before temperature | ECE after | Brier "
          "| temperature | seconds (5 folds) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, split, folds, seconds in rows:
        def cell(key):
            values = np.array([f[key] for f in folds])
            return f"{values.mean():.4f} +/- {values.std():.4f}"
        print(f"| {name} | {split} | {cell('accuracy')} | {cell('f1')} | {cell('roc_auc')} | "
              f"{cell('ece_before')} | {cell('ece')} | {cell('brier')} | {cell('temperature')} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
