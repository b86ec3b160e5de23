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
from _common import load_split
from _pruning_common import add_arguments, print_comparison, train_base

from skcovid import PrunedCNNClassifier
from skcovid.pruning import MagnitudePruner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, backbone="efficientnet_lite0")
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = load_split(args)
    base = train_base(args, X_train, y_train)

    start = time.perf_counter()
    pruner = MagnitudePruner(sparsity=args.sparsity, schedule="polynomial", initial_sparsity=0.0,
                             power=3, frequency=10)
    pruned = PrunedCNNClassifier(base, pruner, finetune_epochs=args.finetune_epochs,
                                 finetune_lr=args.finetune_lr, prefit=True).fit(X_train, y_train)
    print(f"pruned along the schedule while fine-tuning, {time.perf_counter() - start:.0f} s")

    print_comparison(base, pruned, X_test, y_test, ("dense", "pruned"))
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
