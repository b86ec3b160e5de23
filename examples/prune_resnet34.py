"""Transfer-learn ResNet34, prune its filters, fine-tune, and compare on held-out slices.

Mirrors Choudhary et al.'s pruned ResNet34 on the SARS-CoV-2 CT-scan dataset
(95.47% accuracy with 41.96% fewer FLOPs and 20.64% fewer parameters).

Usage::

    python examples/prune_resnet34.py [DATA_DIR] [--weights DEFAULT|PATH|none] [--ratio 0.32]

DATA_DIR holds one sub-folder per class (default: the 200-slice demo set). The
slices are split 80/20, stratified, with ``--random-state``; the unpruned and
the pruned network are scored on the same held-out 20%. ``--weights DEFAULT``
uses torchvision's ImageNet weights when they can be downloaded (or are in the
torch hub cache) and falls back to random initialisation otherwise.
"""

import argparse
import time

from _common import load_split
from _pruning_common import add_arguments, print_comparison, train_base

from skcovid import PrunedCNNClassifier
from skcovid.pruning import StructuredPruner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, backbone="resnet34")
    parser.add_argument("--ratio", type=float, default=0.32, help="fraction of channels removed")
    parser.add_argument("--importance", default="l1", choices=["l1", "l2", "taylor", "bn_scale"])
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = load_split(args)
    base = train_base(args, X_train, y_train)

    start = time.perf_counter()
    pruned = PrunedCNNClassifier(
        base, StructuredPruner(ratio=args.ratio, importance=args.importance, round_to=8),
        finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr, prefit=True,
    ).fit(X_train, y_train)
    print(f"pruned and fine-tuned in {time.perf_counter() - start:.0f} s")

    print_comparison(base, pruned, X_test, y_test, ("unpruned", "pruned"))
    report = pruned.pruning_report()
    print(f"FLOPs: {report['flops_before'] / 1e9:.3f} G -> {report['flops'] / 1e9:.3f} G "
          f"({100 * report['flops_reduction']:.2f}% removed)")
    print(f"parameters: {report['n_params_before']:,} -> {report['n_params']:,} "
          f"({100 * report['params_reduction']:.2f}% removed)")


if __name__ == "__main__":
    main()
