"""Frozen ResNet101, global max pooling, a dense softmax head, Adamax: the 95.18% workflow.

Mirrors the transfer-learned ResNet101 reported at 95.18% test accuracy on the
SARS-CoV-2 CT-scan dataset: ImageNet weights frozen, global max pooling over the
last feature map, one dense softmax layer, Adamax, 224 px inputs, random
horizontal flips. Early stopping on a 10% validation split restores the best
epoch's weights.

Usage::

    python examples/resnet101_maxpool_adamax.py [DATA_DIR] [--dataset sarscov2] [--weights DEFAULT|PATH|none]

On a 2-core CPU, ResNet101 at 224 px runs a few images per second: use a GPU for
the full dataset, or ``--image-size 128 --epochs 5`` to try it.
"""

import argparse
import time

from _common import add_data_arguments, load_split, print_report

from skcovid import TransferCNNClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, image_size=224, epochs=20, batch_size=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = load_split(args)
    clf = TransferCNNClassifier(
        backbone="resnet101", weights=args.weights, freeze="backbone", pooling="max",
        hidden_units=(), dropout=0.0, image_size=args.image_size, augment="flip",
        optimizer="adamax", lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
        early_stopping=5, validation_fraction=0.1, device=args.device,
        random_state=args.random_state,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    print(f"trained {len(clf.history_)} epochs in {time.perf_counter() - start:.0f} s")
    print_report("ResNet101, frozen, max pooling, Adamax", clf, X_test, y_test,
                 published="95.18% test accuracy (SARS-CoV-2 CT-scan dataset)")


if __name__ == "__main__":
    main()
