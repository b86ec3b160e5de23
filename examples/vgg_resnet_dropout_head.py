"""VGG16, VGG19 and ResNet34 with a 4-layer dropout head, Adam and a cyclic learning rate, compared.

Mirrors the comparison of VGG16, VGG19 and ResNet34 on the ~750-image COVID-CT
set: ImageNet backbones frozen, a head of three hidden dense layers with dropout
and the softmax layer, Adam with a triangular cyclic learning rate, 30 epochs.

Usage::

    python examples/vgg_resnet_dropout_head.py [DATA_DIR] [--dataset covid-ct] [--weights DEFAULT|PATH|none]

``--dataset covid-ct`` downloads COVID-CT and uses its official split (train and
val for training, test held out); ``--backbones`` picks the models to compare.
"""

import argparse
import time

from _common import add_data_arguments, load_split, print_report

from skcovid import TransferCNNClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, image_size=224, epochs=30, batch_size=32)
    parser.add_argument("--backbones", default="vgg16,vgg19,resnet34")
    parser.add_argument("--hidden-units", default="1024,512,256")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = load_split(args)
    rows = {}
    for backbone in args.backbones.split(","):
        clf = TransferCNNClassifier(
            backbone=backbone, weights=args.weights, freeze="backbone",
            hidden_units=tuple(int(u) for u in args.hidden_units.split(",")), dropout=args.dropout,
            image_size=args.image_size, augment="flip", optimizer="adam", lr=args.lr,
            lr_schedule="cyclic", batch_size=args.batch_size, max_epochs=args.epochs,
            early_stopping=None, validation_fraction=None, device=args.device,
            random_state=args.random_state,
        )
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        print(f"\ntrained {backbone} for {args.epochs} epochs in {time.perf_counter() - start:.0f} s")
        rows[backbone] = print_report(backbone, clf, X_test, y_test).metrics

    names = list(rows)
    print("\n" + f"{'':>12}  " + "  ".join(f"{n:>10}" for n in names))
    for metric in ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"):
        print(f"{metric:>12}  " + "  ".join(f"{rows[n][metric]['value']:10.4f}" for n in names))


if __name__ == "__main__":
    main()
