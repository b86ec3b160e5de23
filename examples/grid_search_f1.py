"""Grid search over learning rate, batch size, optimizer and backbone, maximising F1.

Mirrors the ResNet50 / Inception v3 / InceptionResNet v2 study: augmentation,
early stopping with the best epoch's weights restored (the best checkpoint), and
a grid search whose candidates are ranked by cross-validated F1. The winner,
refitted on all training slices, is scored on the held-out slices.

Usage::

    python examples/grid_search_f1.py [DATA_DIR] [--weights DEFAULT|PATH|none]
        [--backbones resnet50,inception_v3,timm:inception_resnet_v2] [--lrs 1e-3,1e-4]
        [--batch-sizes 16,32] [--optimizers adam,sgd] [--cv 3]

Inception v3 and InceptionResNet v2 take 299 px inputs, ResNet50 224 px
(``--image-size`` overrides both). InceptionResNet v2 comes from timm
(``pip install "skcovid[timm]"``). The full grid trains 3 x 2 x 2 x 2 x 3 = 72
networks: a GPU job.
"""

import argparse

from _common import add_data_arguments, load_split, print_report
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skcovid import TransferCNNClassifier
from skcovid.metrics import SCORING

_NATIVE_SIZE = {"inception_v3": 299, "timm:inception_resnet_v2": 299}


def _list(kind):
    return lambda text: [kind(v) for v in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, image_size=None, epochs=20, batch_size=None)
    parser.add_argument("--backbones", type=_list(str),
                        default=["resnet50", "inception_v3", "timm:inception_resnet_v2"])
    parser.add_argument("--lrs", type=_list(float), default=[1e-3, 1e-4])
    parser.add_argument("--batch-sizes", type=_list(int), default=[16, 32])
    parser.add_argument("--optimizers", type=_list(str), default=["adam", "sgd"])
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--validation-fraction", type=float, default=0.1,
                        help="held out of each fit for early stopping and the best checkpoint")
    parser.add_argument("--n-jobs", type=int, default=None)
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = load_split(args)
    clf = TransferCNNClassifier(
        weights=args.weights, freeze="backbone", augment="ct", max_epochs=args.epochs,
        early_stopping=5, validation_fraction=args.validation_fraction, device=args.device,
        random_state=args.random_state,
    )
    grid = [
        {"backbone": [backbone],
         "image_size": [args.image_size or _NATIVE_SIZE.get(backbone, 224)],
         "lr": args.lrs, "batch_size": args.batch_sizes, "optimizer": args.optimizers}
        for backbone in args.backbones
    ]
    cv = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
    search = GridSearchCV(clf, grid, scoring=SCORING, refit="f1", cv=cv, n_jobs=args.n_jobs,
                          error_score="raise")
    search.fit(X_train, y_train)

    results = search.cv_results_
    order = results["rank_test_f1"].argsort()
    print(f"\n{len(order)} candidates, {args.cv}-fold cross-validated F1 (mean +/- std):")
    for i in order[:10]:
        params = {k: v for k, v in results["params"][i].items() if k != "image_size"}
        print(f"  {results['mean_test_f1'][i]:.4f} +/- {results['std_test_f1'][i]:.4f}  {params}")
    print(f"best: {search.best_params_}")
    print_report("best candidate, refitted on all training slices", search.best_estimator_,
                 X_test, y_test)


if __name__ == "__main__":
    main()
