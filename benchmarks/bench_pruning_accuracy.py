"""Accuracy lost to pruning, in stratified 5-fold cross-validation on real CT slices.

Protocol (issue 13): the 2479 distinct SARS-CoV-2 slices, stratified 5-fold,
seed 0. In each fold, EfficientNet-Lite0 (its ImageNet weights) is fine-tuned
on the training folds, then copies of it are pruned and fine-tuned:

- structured pruning to ``--target-flops`` of the FLOPs (0.4: 60% fewer), channel
  counts multiples of 8, ranked by L1 norm in each layer:
  (a) one-shot + fine-tuning, (b) + distillation from the unpruned network,
  (c) ``--cycles`` prune-and-fine-tune cycles, (d) cycles + distillation;
- (e) magnitude pruning to ``--sparsity`` along the polynomial schedule.

Every variant fine-tunes ``--finetune-epochs`` epochs in total (no more than
the unpruned fit's ``--epochs``). The fine-tuning learning rate is chosen in
each fold among ``--lrs`` by an inner stratified 80/20 split of the training
folds only (variant (a) pruned from the fold's unpruned model, scored on the
inner 20%), never by the fold that is scored. Prints each fold's scores, then
per variant the mean and standard deviation of accuracy and ROC-AUC and of
the paired difference to the unpruned model, with what pruning removed.

Usage::

    python benchmarks/bench_pruning_accuracy.py [--image-size 128] [--epochs 3] [--finetune-epochs 3]
        [--folds 0 1 2 3 4]

On 2 CPU cores at 128 px a fold takes about 15 minutes.
"""

import argparse
import time

import numpy as np
import torch
from _slices import classifier, machine, real_slices
from sklearn.model_selection import StratifiedKFold, train_test_split

from skcovid import PrunedCNNClassifier
from skcovid.metrics import diagnostic_scores
from skcovid.pruning import MagnitudePruner, StructuredPruner


def _variants(args, ratio):
    structured = StructuredPruner(ratio=ratio, round_to=8)
    return {
        "(a) structured one-shot": dict(pruner=structured),
        "(b) structured + distillation": dict(pruner=structured, distillation_alpha=args.alpha),
        f"(c) structured, {args.cycles} cycles": dict(pruner=structured, cycles=args.cycles),
        f"(d) structured, {args.cycles} cycles + distillation": dict(
            pruner=structured, cycles=args.cycles, distillation_alpha=args.alpha),
        f"(e) magnitude {args.sparsity} (polynomial)": dict(
            pruner=MagnitudePruner(sparsity=args.sparsity, schedule="polynomial", frequency=10)),
    }


def _prune(base, X, y, lr, args, **params):
    return PrunedCNNClassifier(base, finetune_epochs=args.finetune_epochs, finetune_lr=lr, prefit=True,
                               **params).fit(X, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 5e-4])
    parser.add_argument("--target-flops", type=float, default=0.4)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.5, help="distillation_alpha")
    parser.add_argument("--folds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--n-slices", type=int, default=None, help="a stratified sample (a quick check)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    X, y = real_slices(args.n_slices, data_dir=args.data_dir)
    print(f"{machine()}; {len(X)} slices, stratified 5-fold (seed 0), folds run: {args.folds}; "
          f"{args.image_size} px; unpruned {args.epochs} epochs, pruned {args.finetune_epochs} "
          f"fine-tuning epochs, lr from {args.lrs} by an inner 80/20 split\n", flush=True)
    scores, removed, variants = {"unpruned": []}, {}, None
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    for k in args.folds:
        train, test = folds[k]
        start = time.perf_counter()
        base = classifier(
            backbone="efficientnet_lite0", weights="DEFAULT", freeze="none", image_size=args.image_size,
            augment="flip", optimizer="adam", lr=1e-3, lr_schedule="cosine", batch_size=16,
            max_epochs=args.epochs, early_stopping=None, validation_fraction=None, random_state=0,
        ).fit(X[train], y[train])
        if variants is None:
            # Per-layer pruning removes the same channels' worth of FLOPs whatever the weights: the
            # ratio that keeps --target-flops is searched once (StructuredPruner(target_flops=...)).
            module = base.net_.module_
            shape = (1, 3 if base.window == "multi" else 1, args.image_size, args.image_size)
            search = StructuredPruner(target_flops=args.target_flops, round_to=8).fit(module, torch.zeros(shape))
            variants = _variants(args, search.ratio_)
            scores.update({name: [] for name in variants})
            removed.update({name: [] for name in variants})
            print(f"ratio {search.ratio_:.4f} keeps {args.target_flops:.0%} of the FLOPs", flush=True)
        scores["unpruned"].append(diagnostic_scores(base, X[test], y[test]))
        # The fine-tuning learning rate, from the training folds only.
        inner_train, inner_val = train_test_split(train, test_size=0.2, stratify=y[train], random_state=0)
        inner = {lr: diagnostic_scores(_prune(base, X[inner_train], y[inner_train], lr, args,
                                              **variants["(a) structured one-shot"]),
                                       X[inner_val], y[inner_val])["accuracy"] for lr in args.lrs}
        lr = max(args.lrs, key=lambda v: (inner[v], -v))
        line = [f"fold {k}: unpruned {scores['unpruned'][-1]['accuracy']:.4f}; inner-split accuracy "
                + ", ".join(f"lr {v:g}: {a:.4f}" for v, a in inner.items()) + f" -> lr {lr:g}"]
        for name, params in variants.items():
            pruned = _prune(base, X[train], y[train], lr, args, **params)
            scores[name].append(diagnostic_scores(pruned, X[test], y[test]))
            removed[name].append(pruned.pruning_report())
            line.append(f"{name} {scores[name][-1]['accuracy']:.4f}")
        print("; ".join(line) + f" ({time.perf_counter() - start:.0f} s)", flush=True)

    print("\n| model | accuracy | ROC-AUC | accuracy - unpruned (paired) | per fold | FLOPs removed "
          "| params removed | size on disk |")
    print("|---|---|---|---|---|---|---|---|")
    reference = np.array([s["accuracy"] for s in scores["unpruned"]])
    for name, rows in scores.items():
        acc = np.array([s["accuracy"] for s in rows])
        auc = np.array([s["roc_auc"] for s in rows])
        diff = acc - reference
        if name == "unpruned":
            cut = ("-", "-", "100%")
        else:
            reports = removed[name]
            cut = (f"{100 * np.mean([r['flops_reduction'] for r in reports]):.1f}%",
                   f"{100 * np.mean([r['params_reduction'] for r in reports]):.1f}%",
                   f"{100 * np.mean([r['model_size_bytes'] / r['model_size_bytes_before'] for r in reports]):.1f}%")
        print(f"| {name} | {acc.mean():.4f} +/- {acc.std():.4f} | {auc.mean():.4f} +/- {auc.std():.4f} "
              f"| {diff.mean():+.4f} +/- {diff.std():.4f} | {', '.join(f'{d:+.4f}' for d in diff)} "
              f"| {cut[0]} | {cut[1]} | {cut[2]} |")


if __name__ == "__main__":
    main()
