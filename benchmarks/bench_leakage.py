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
  ``augment="ct"``), skcovid's fine-tuning before the recipe;
- ``recipe``: ``skcovid.recipe("finetune")``, the command line's default
  (head first, then the whole network with layer-wise learning rates on
  one-cycle schedules, label smoothing, flip test-time augmentation), at
  ``--size`` px with ``--head-epochs`` + ``--epochs`` epochs.

``--n-blocks N`` keeps N of the blocks (whole, drawn per class in proportion,
seed 0) for both splits, so that the fine-tuned models fit in a CPU's time.

Each model is fitted with ``calibration="temperature"`` (the temperature fitted
on a validation split of 20% of the training folds, blocks kept whole with
the blocked split), so the figures also give the expected calibration error
(10 bins) before and after temperature scaling, and the Brier score. Two more
columns say what an ECE goal can mean on folds this size, and are not results:

- ``ECE, oracle T``: the ECE at the temperature with the lowest negative
  log-likelihood on the scored fold itself, a reference that a temperature
  fitted elsewhere can only approach (it minimises log-loss, not ECE);
- ``ECE floor``: the mean ECE of 200 label sets drawn from the calibrated
  probabilities themselves, which a perfectly calibrated model with these
  probabilities shows on a fold this size (the estimator's bias).

``--out-of-fold`` adds ``ECE, out-of-fold T``: the temperature fitted as
``skcovid train --cv 5`` fits its saved model's, on the out-of-fold
probabilities of an inner 5-fold split of the training folds (blocks kept
whole with the blocked split), five more fits per fold.

Usage::

    python benchmarks/bench_leakage.py [--size 128] [--models frozen fine-tuned recipe] [--n-blocks 40]

Prints a Markdown table (the one in docs/benchmarks.md).
"""

import argparse
import tempfile
import time

import numpy as np
from _slices import classifier, machine, real_slices
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from skcovid import recipe
from skcovid._decision.decide import scale
from skcovid._decision.fit import fit_temperature, out_of_fold_proba, raw_proba
from skcovid.metrics import bootstrap_calibration, bootstrap_scores
from skcovid.model_selection import BlockedStratifiedKFold

METRICS = ("accuracy", "f1", "roc_auc")


def _model(name, args, cache):
    common = dict(backbone="efficientnet_lite0", weights="DEFAULT", image_size=args.size, batch_size=32,
                  early_stopping=None, validation_fraction=0.2, calibration="temperature", random_state=0)
    if name == "frozen":
        return classifier(freeze="backbone", max_epochs=args.frozen_epochs, memory=cache, **common)
    if name == "recipe":
        return recipe("finetune", max_epochs=args.epochs, head_epochs=args.head_epochs, **common)
    return classifier(freeze="none", augment="ct", lr=3e-4, max_epochs=args.epochs, **common)


def _some_blocks(blocks, y, n_blocks):
    """Indices of the samples in ``n_blocks`` whole blocks, drawn per class in proportion (seed 0)."""
    rng = np.random.RandomState(0)
    labels, first = np.unique(y, return_index=True)
    per_class = {label: np.unique(blocks[y == label]) for label in labels}
    total = sum(len(b) for b in per_class.values())
    chosen = np.concatenate([rng.choice(b, max(1, round(n_blocks * len(b) / total)), replace=False)
                             for b in per_class.values()])
    return np.flatnonzero(np.isin(blocks, chosen))


def _scores(y, proba, classes):
    scores = bootstrap_scores(y, proba, classes, n_bootstraps=0)
    calibration = bootstrap_calibration(y, proba, classes, n_bootstraps=0)
    return {**{m: scores[m]["value"] for m in METRICS},
            "ece": calibration["ece"]["value"], "brier": calibration["brier"]["value"]}


def _ece_floor(proba, classes, n_draws=200):
    """Mean ECE over label sets drawn from ``proba`` itself (seed 0)."""
    rng = np.random.RandomState(0)
    draws = [classes[(rng.uniform(size=len(proba)) > proba[:, 0]).astype(int)] for _ in range(n_draws)]
    return float(np.mean([bootstrap_calibration(y, proba, classes, n_bootstraps=0)["ece"]["value"]
                          for y in draws]))


def _out_of_fold_temperature(model, X, y, groups):
    """The temperature fitted on out-of-fold raw probabilities of an inner 5-fold split, as ``train --cv 5``."""
    if groups is None:
        splits = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
    else:
        splits = StratifiedGroupKFold(5, shuffle=True, random_state=0).split(X, y, groups)
    inner, tests = [], []
    for train, test in splits:
        inner.append(clone(model).fit(X[train], y[train], groups=None if groups is None else groups[train]))
        tests.append(test)
    return fit_temperature(out_of_fold_proba(inner, tests, X), np.searchsorted(model.classes_, y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frozen-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=25)
    parser.add_argument("--head-epochs", type=int, default=2, help="the recipe's head-only epochs")
    parser.add_argument("--n-blocks", type=int, default=None, help="keep this many whole blocks")
    parser.add_argument("--models", nargs="+", default=["frozen", "fine-tuned", "recipe"],
                        choices=["frozen", "fine-tuned", "recipe"])
    parser.add_argument("--splits", nargs="+", default=["random", "blocked"], choices=["random", "blocked"])
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out-of-fold", action="store_true",
                        help="also the temperature fitted on an inner 5-fold split's out-of-fold probabilities")
    args = parser.parse_args()
    X, y = real_slices(data_dir=args.data_dir)
    blocked = BlockedStratifiedKFold(5, block_size=args.block_size)
    blocks = blocked.blocks(X, y)
    if args.n_blocks is not None:
        kept = _some_blocks(blocks, y, args.n_blocks)
        X, y, blocks = X[kept], y[kept], blocks[kept]
    # A subset keeps whole blocks: its own blocks are the same groups of files.
    splits = {name: split for name, split in {
        "random": (StratifiedKFold(5, shuffle=True, random_state=0), None),
        "blocked": (blocked, blocks)}.items() if name in args.splits}
    print(f"{machine()}; {len(X)} slices ({len(np.unique(blocks))} blocks of {args.block_size}), "
          f"{args.size} px; folds {args.folds}\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in args.models:
            for split, (cv, groups) in splits.items():
                folds, start = [], time.perf_counter()
                for fold, (train, test) in enumerate(cv.split(X, y, groups)):
                    if fold not in args.folds:
                        continue
                    clf = _model(name, args, cache).fit(
                        X[train], y[train], groups=None if groups is None else groups[train])
                    # One forward pass: scale(raw, T) is what predict_proba returns.
                    temperature = clf.temperature_
                    raw = raw_proba(clf, X[test])
                    proba = scale(raw, temperature)
                    oracle = fit_temperature(raw, np.searchsorted(clf.classes_, y[test]))
                    folds.append({**_scores(y[test], proba, clf.classes_),
                                  "ece_before": _scores(y[test], raw, clf.classes_)["ece"],
                                  "ece_oracle": _scores(y[test], scale(raw, oracle), clf.classes_)["ece"],
                                  "ece_floor": _ece_floor(proba, clf.classes_),
                                  "temperature": temperature, "oracle_temperature": oracle})
                    if args.out_of_fold:
                        oof = _out_of_fold_temperature(clf, X[train], y[train],
                                                       None if groups is None else groups[train])
                        folds[-1].update(ece_oof=_scores(y[test], scale(raw, oof), clf.classes_)["ece"],
                                         oof_temperature=oof)
                    print(f"  {name}, {split}, fold {fold}: " + ", ".join(
                        f"{k} {v:.4f}" for k, v in folds[-1].items()), flush=True)
                rows.append((name, split, folds, time.perf_counter() - start))
                print(f"{name}, {split}: " + ", ".join(f"{k} {np.mean([f[k] for f in folds]):.4f}"
                                                       for k in folds[0]) + f" ({rows[-1][3]:.0f} s)",
                      flush=True)
    print("\n| model | split | accuracy | F1 | ROC-AUC | ECE before temperature | ECE after | Brier "
          "| temperature | ECE, out-of-fold T | ECE, oracle T | ECE floor | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, split, folds, seconds in rows:
        def cell(key):
            if key not in folds[0]:
                return "-"
            values = np.array([f[key] for f in folds])
            return f"{values.mean():.4f} +/- {values.std():.4f}"
        print(f"| {name} | {split} | {cell('accuracy')} | {cell('f1')} | {cell('roc_auc')} | "
              f"{cell('ece_before')} | {cell('ece')} | {cell('brier')} | {cell('temperature')} | "
              f"{cell('ece_oof')} | {cell('ece_oracle')} | {cell('ece_floor')} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
