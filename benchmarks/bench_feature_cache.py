"""GridSearchCV over head hyperparameters with and without the feature cache (``memory=``).

3 folds x 6 head candidates on real slices with the frozen, pretrained
EfficientNet-Lite0: 18 fits and the refit. Without ``memory`` each fit runs the
backbone once over its images (already once per fit, not per epoch); with it,
each image goes through the backbone once for the whole search. Goal: at least
10x faster, with identical best parameters and scores.

Usage::

    python benchmarks/bench_feature_cache.py [--n 600] [--image-size 224] [--epochs 20]
"""

import argparse
import tempfile
import time

import numpy as np
from _slices import classifier, machine, real_slices
from sklearn.model_selection import GridSearchCV, StratifiedKFold


def search(X, y, args, memory):
    clf = classifier(freeze="backbone", image_size=args.image_size,
                                max_epochs=args.epochs, batch_size=32, early_stopping=None,
                                validation_fraction=None, random_state=0, memory=memory)
    grid = {"lr": [1e-3, 3e-3, 1e-2], "hidden_units": [(), (64,)]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    start = time.perf_counter()
    result = GridSearchCV(clf, grid, cv=cv, scoring="f1_macro").fit(X, y)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    X, y = real_slices(args.n, data_dir=args.data_dir)
    print(machine())
    print(f"{len(X)} slices, {args.image_size} px, 3 folds x 6 candidates, {args.epochs} epochs each")
    plain, t_plain = search(X, y, args, memory=None)
    print(f"  without memory: {t_plain:7.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        cached, t_cold = search(X, y, args, memory=folder)
        print(f"  with memory (empty cache at the start): {t_cold:7.1f} s")
        _, t_warm = search(X, y, args, memory=folder)
        print(f"  with memory (features already cached):  {t_warm:7.1f} s")
    same_params = plain.best_params_ == cached.best_params_
    max_diff = np.max(np.abs(plain.cv_results_["mean_test_score"] - cached.cv_results_["mean_test_score"]))
    print(f"speed-up {t_plain / t_cold:.1f}x from an empty cache, {t_plain / t_warm:.1f}x warm "
          f"(goal >= 10x); best params identical: {same_params} ({plain.best_params_}); "
          f"largest difference in mean CV score: {max_diff:.2e}; best macro-F1 {plain.best_score_:.4f}")


if __name__ == "__main__":
    main()
