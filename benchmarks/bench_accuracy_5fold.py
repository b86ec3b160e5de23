"""Accuracy on the SARS-CoV-2 CT-scan slices, stratified 5-fold (seed 0), beside published figures.

Models, each scored on the held-out fold:

- ``frozen``: pretrained EfficientNet-Lite0 frozen, a new linear head trained on
  its features (``--frozen-size`` px; features cached once for all folds);
- ``fine-tuned``: the same network trained end to end (``--size`` px);
- ``+ structured``: the fine-tuned network with ``--ratio`` of its channels
  pruned (torch-pruning), fine-tuned again;
- ``+ magnitude``: the fine-tuned network pruned to ``--sparsity`` along the
  polynomial-decay schedule while fine-tuning.

The two byte-identical files are dropped so that no image is on both sides of a
split. Slices have no patient ids: slice-level folds are optimistic, as are the
published figures they are compared with (pruned ResNet34 95.47%, ResNet101
95.18%, xDNN 97.38%).

Usage::

    python benchmarks/bench_accuracy_5fold.py [--size 128] [--epochs 3] [--frozen-size 224]
"""

import argparse
import tempfile
import time

import numpy as np
from _slices import classifier, machine, real_slices
from sklearn.model_selection import StratifiedKFold

from skcovid import PrunedCNNClassifier
from skcovid.pruning import MagnitudePruner, StructuredPruner
from skcovid.report import evaluate

PUBLISHED = "pruned ResNet34 95.47% (sens 0.9216, spec 0.9942), ResNet101 95.18%, xDNN 97.38%"
METRICS = ("accuracy", "sensitivity", "specificity", "f1", "roc_auc")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--frozen-size", type=int, default=224)
    parser.add_argument("--frozen-epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()

    X, y = real_slices(data_dir=args.data_dir)
    print(machine())
    print(f"{len(X)} slices (duplicates dropped), stratified 5-fold, seed 0")
    scores = {name: [] for name in ("frozen", "fine-tuned", "+ structured", "+ magnitude")}
    seconds = dict.fromkeys(scores, 0.0)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    with tempfile.TemporaryDirectory() as cache:
        for fold, (train, test) in enumerate(cv.split(X, y), 1):
            models = {}
            start = time.perf_counter()
            models["frozen"] = classifier(
                freeze="backbone", image_size=args.frozen_size, max_epochs=args.frozen_epochs,
                lr=1e-3, early_stopping=5, validation_fraction=0.1, random_state=0, memory=cache,
            ).fit(X[train], y[train])
            seconds["frozen"] += time.perf_counter() - start
            start = time.perf_counter()
            base = classifier(
                freeze="none", image_size=args.size, augment="flip", lr=1e-3, lr_schedule="cosine",
                max_epochs=args.epochs, early_stopping=None, validation_fraction=None, random_state=0,
            ).fit(X[train], y[train])
            models["fine-tuned"] = base
            seconds["fine-tuned"] += time.perf_counter() - start
            for name, pruner, lr in (("+ structured", StructuredPruner(ratio=args.ratio), 5e-4),
                                     ("+ magnitude", MagnitudePruner(sparsity=args.sparsity,
                                                                     schedule="polynomial"), 1e-4)):
                start = time.perf_counter()
                models[name] = PrunedCNNClassifier(base, pruner, finetune_epochs=args.finetune_epochs,
                                                   finetune_lr=lr, prefit=True).fit(X[train], y[train])
                seconds[name] += time.perf_counter() - start
            for name, model in models.items():
                report = evaluate(model, X[test], y[test], n_bootstraps=0)
                scores[name].append({m: report.metrics[m]["value"] for m in METRICS})
            print(f"fold {fold}: " + ", ".join(f"{n} {s[-1]['accuracy']:.4f}" for n, s in scores.items()),
                  flush=True)
            reductions = models["+ structured"].pruning_report()

    print(f"\n{'':>14}  " + "  ".join(f"{m:>17}" for m in METRICS) + "  train time")
    for name, rows in scores.items():
        cells = []
        for metric in METRICS:
            values = np.array([r[metric] for r in rows])
            cells.append(f"{values.mean():.4f} +/- {values.std():.4f}")
        print(f"{name:>14}  " + "  ".join(f"{c:>17}" for c in cells) + f"  {seconds[name]:6.0f} s")
    print(f"structured pruning removed {reductions['flops_reduction']:.1%} of the FLOPs and "
          f"{reductions['params_reduction']:.1%} of the parameters (last fold)")
    print(f"published, for comparison: {PUBLISHED}")


if __name__ == "__main__":
    main()
