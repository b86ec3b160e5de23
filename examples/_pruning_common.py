"""What the pruning examples share: options, the held-out split, the base model, the comparison."""

import time

from _common import weights

from skcovid import TransferCNNClassifier
from skcovid.metrics import diagnostic_scores


def add_arguments(parser, backbone):
    """Options of both examples; ``backbone`` is the default backbone."""
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--dataset", default="sample", choices=["sample", "sarscov2", "covid-ct"])
    parser.add_argument("--backbone", default=backbone)
    parser.add_argument("--weights", type=weights, default="DEFAULT")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--finetune-lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--random-state", type=int, default=0)


def train_base(args, X_train, y_train):
    """Fine-tune the backbone end to end; without a model hub, fall back to random init and say so."""
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
    return base


def print_comparison(base, pruned, X_test, y_test, names):
    """Held-out metrics of the two models side by side; ``names`` heads the two columns."""
    before, after = diagnostic_scores(base, X_test, y_test), diagnostic_scores(pruned, X_test, y_test)
    print(f"positive class: {before.pop('pos_label')}")
    after.pop("pos_label")
    print(f"{'':>12}  {names[0]:>9}  {names[1]:>9}")
    for name in before:
        print(f"{name:>12}  {before[name]:9.4f}  {after[name]:9.4f}")
