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

from sklearn.model_selection import train_test_split

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.datasets import load_image_folder, load_sample_ct
from skcovid.metrics import diagnostic_scores
from skcovid.pruning import StructuredPruner


def parse_weights(value):
    return None if value.lower() == "none" else value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--backbone", default="resnet34")
    parser.add_argument("--weights", type=parse_weights, default="DEFAULT")
    parser.add_argument("--ratio", type=float, default=0.32, help="fraction of channels removed")
    parser.add_argument("--importance", default="l1", choices=["l1", "l2", "taylor", "bn_scale"])
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
    start = time.perf_counter()
    try:
        base = TransferCNNClassifier(weights=args.weights, **params).fit(X_train, y_train)
    except RuntimeError as exc:  # no model hub and nothing in the cache
        print(f"ImageNet weights unavailable ({str(exc).split('(')[0].strip()}); training from random init")
        base = TransferCNNClassifier(weights=None, **params).fit(X_train, y_train)
    print(f"trained {args.backbone} in {time.perf_counter() - start:.0f} s")

    start = time.perf_counter()
    pruned = PrunedCNNClassifier(
        base, StructuredPruner(ratio=args.ratio, importance=args.importance, round_to=8),
        finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr, prefit=True,
    ).fit(X_train, y_train)
    print(f"pruned and fine-tuned in {time.perf_counter() - start:.0f} s")

    before, after = diagnostic_scores(base, X_test, y_test), diagnostic_scores(pruned, X_test, y_test)
    print(f"positive class: {before.pop('pos_label')}")
    after.pop("pos_label")
    print(f"{'':>12}  {'unpruned':>9}  {'pruned':>9}")
    for name in before:
        print(f"{name:>12}  {before[name]:9.4f}  {after[name]:9.4f}")
    report = pruned.pruning_report()
    print(f"FLOPs: {report['flops_before'] / 1e9:.3f} G -> {report['flops'] / 1e9:.3f} G "
          f"({100 * report['flops_reduction']:.2f}% removed)")
    print(f"parameters: {report['n_params_before']:,} -> {report['n_params']:,} "
          f"({100 * report['params_reduction']:.2f}% removed)")


if __name__ == "__main__":
    main()
