"""``skcovid demo``: train, prune, evaluate and explain on the slices shipped with skcovid."""

import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from skcovid._cli.common import class_counts, print_pruning, write_explanations
from skcovid._deploy.persistence import save_model
from skcovid._estimators.pruned import PrunedCNNClassifier
from skcovid._estimators.recipes import DEFAULT_RECIPE, recipe
from skcovid._evaluation.report import evaluate
from skcovid.datasets import load_sample_ct
from skcovid.pruning import StructuredPruner


def run(args):
    total = time.perf_counter()
    out = Path(args.out)
    X, y = load_sample_ct()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state)
    print(f"[1/5] data: {len(X)} real CT slices shipped with skcovid ({class_counts(y)}); "
          f"training on {len(X_train)}, holding out {len(X_test)} (stratified, seed {args.random_state})")

    start = time.perf_counter()
    base = recipe(DEFAULT_RECIPE, image_size=args.image_size, max_epochs=args.max_epochs,
                  random_state=args.random_state, verbose=0 if args.quiet else 1).fit(X_train, y_train)
    unpruned = evaluate(base, X_test, y_test, random_state=args.random_state)
    print(f"[2/5] trained the default recipe ('{DEFAULT_RECIPE}': pretrained {base.backbone}, freeze="
          f"{base.freeze!r}, crop={base.crop!r}) at {args.image_size} px for {args.max_epochs} epochs "
          f"({time.perf_counter() - start:.0f} s); held-out:\n{unpruned.summary()}")

    start = time.perf_counter()
    pruned = PrunedCNNClassifier(base, StructuredPruner(ratio=args.prune_ratio),
                                 finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                                 prefit=True).fit(X_train, y_train)
    # The saved model need not carry the unpruned network it started from: it
    # is what fitting the unfitted base would give (same data, same seed).
    pruned.set_params(estimator=clone(base), prefit=False)
    report = evaluate(pruned, X_test, y_test, random_state=args.random_state)
    print(f"[3/5] pruned {args.prune_ratio:.0%} of the channels and fine-tuned "
          f"{args.finetune_epochs} epochs ({time.perf_counter() - start:.0f} s); held-out:\n"
          f"{report.summary()}")
    print_pruning(pruned)

    start = time.perf_counter()
    unpruned.save(out / "report-unpruned")
    paths = report.save(out / "report")
    model = save_model(pruned, out / "model.skcovid")
    print(f"[4/5] report: {paths['index']} (unpruned: {out / 'report-unpruned' / 'index.html'}); "
          f"model: {model} ({time.perf_counter() - start:.0f} s)")

    start = time.perf_counter()
    picks = [X_test[np.flatnonzero(y_test == label)[:2]] for label in np.unique(y_test)]
    written = write_explanations(pruned, np.concatenate(picks), out / "explain", layer=None,
                                  target=None, feature_maps=False, quiet=args.quiet)
    print(f"[5/5] Grad-CAM of {len(written)} held-out slices in {out / 'explain'} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"done in {time.perf_counter() - total:.0f} s. Next: skcovid train YOUR_DATA_DIR "
          f"--out model.skcovid; skcovid evaluate model.skcovid TEST_DIR --report report/")
