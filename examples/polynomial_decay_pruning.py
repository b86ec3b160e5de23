"""Magnitude pruning to 50% sparsity along a polynomial-decay schedule.

Mirrors Shahabade and Londhe: sparsity rises during fine-tuning along
TensorFlow Model Optimization's PolynomialDecay (7.85M -> 3.93M parameters,
29.96 -> 15.00 MB, test accuracy 97% -> 92%). Zeroed weights are stored as a
bit mask plus values, so the saved model really shrinks.

Usage::

    python examples/polynomial_decay_pruning.py [DATA_DIR] [--weights DEFAULT|PATH|none] [--sparsity 0.5]

DATA_DIR holds one sub-folder per class (default: the 200-slice demo set);
80/20 stratified split with ``--random-state``.
"""

import argparse
import os
import tempfile
import time

import joblib
from sklearn.model_selection import train_test_split

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.datasets import load_image_folder, load_sample_ct
from skcovid.metrics import diagnostic_scores
from skcovid.pruning import MagnitudePruner


def parse_weights(value):
    return None if value.lower() == "none" else value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", type=parse_weights, default="DEFAULT")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args()

    X, y = load_image_folder(args.data_dir) if args.data_dir else load_sample_ct()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=args.random_state)
    print(f"{len(X_train)} training and {len(X_test)} held-out slices (seed {args.random_state})")

    params = dict(backbone=args.backbone, freeze="none", image_size=args.image_size, augment="flip",
                  optimizer="adam", lr=1e-3, lr_schedule="cosine", batch_size=args.batch_size,
                  max_epochs=args.epochs, early_stopping=None, validation_fraction=None,
                  random_state=args.random_state)
    try:
        base = TransferCNNClassifier(weights=args.weights, **params).fit(X_train, y_train)
    except RuntimeError as exc:  # no model hub and nothing in the cache
        print(f"ImageNet weights unavailable ({str(exc).split('(')[0].strip()}); training from random init")
        base = TransferCNNClassifier(weights=None, **params).fit(X_train, y_train)

    start = time.perf_counter()
    pruner = MagnitudePruner(sparsity=args.sparsity, schedule="polynomial", initial_sparsity=0.0,
                             power=3, frequency=10)
    pruned = PrunedCNNClassifier(base, pruner, finetune_epochs=args.finetune_epochs,
                                 finetune_lr=args.finetune_lr, prefit=True).fit(X_train, y_train)
    print(f"pruned along the schedule while fine-tuning, {time.perf_counter() - start:.0f} s")

    before, after = diagnostic_scores(base, X_test, y_test), diagnostic_scores(pruned, X_test, y_test)
    print(f"positive class: {before.pop('pos_label')}")
    after.pop("pos_label")
    print(f"{'':>12}  {'dense':>9}  {'pruned':>9}")
    for name in before:
        print(f"{name:>12}  {before[name]:9.4f}  {after[name]:9.4f}")
    report = pruned.pruning_report()
    print(f"parameters: {report['n_params_before'] / 1e6:.2f}M -> {report['n_nonzero_params'] / 1e6:.2f}M "
          f"non-zero (sparsity {100 * report['sparsity']:.1f}%)")
    print(f"network on disk: {report['model_size_bytes_before'] / 2**20:.2f} MB -> "
          f"{report['model_size_bytes'] / 2**20:.2f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pruned.joblib")
        joblib.dump(pruned.set_params(estimator=None), path)
        print(f"saved PrunedCNNClassifier (joblib): {os.path.getsize(path) / 2**20:.2f} MB")


if __name__ == "__main__":
    main()
