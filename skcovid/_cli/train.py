"""``skcovid train``: fit on a class folder, score a held-out split or K folds, save the model."""

import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold, cross_validate

from skcovid._cli.common import class_counts, decisions, log, predict_in_chunks, print_pruning
from skcovid._cli.data import held_out_split, load_folders, patients_of, split_units
from skcovid._cli.main import CommandError
from skcovid._cli.options import FROM_RECIPE, MODEL_OPTIONS
from skcovid._core.compat import InvalidParameterError
from skcovid._core.estimator import owner as owner_of
from skcovid._decision.fit import decision_of, out_of_fold_proba, refit_decision, temperature_of
from skcovid._deploy.persistence import save_model
from skcovid._estimators.pruned import PrunedCNNClassifier
from skcovid._estimators.recipes import recipe
from skcovid._evaluation.comparison import compare, format_comparison
from skcovid._evaluation.metrics import make_scoring, scores_by_group
from skcovid._evaluation.report import evaluate
from skcovid._evaluation.scoring import METRICS
from skcovid.pruning import MagnitudePruner, StructuredPruner


def _estimator_params(args, estimator):
    """The values of the parsed options that set parameters of ``estimator`` (a class name).

    Options left to the recipe (:data:`FROM_RECIPE`) are left out.
    """
    return {option.param: getattr(args, option.param) for option in MODEL_OPTIONS
            if option.estimator == estimator and getattr(args, option.param) is not FROM_RECIPE}


def build_estimator(args, verbose):
    """The estimator the parsed options describe.

    The ``--recipe``'s ``TransferCNNClassifier`` with the options given,
    wrapped in a ``PrunedCNNClassifier`` when ``--prune`` is given.
    """
    clf = recipe(args.recipe, **_estimator_params(args, "TransferCNNClassifier"), verbose=verbose)
    if args.prune is None:
        return clf
    method, amount = args.prune
    if method == "structured":
        pruner = StructuredPruner(ratio=amount)
    else:
        schedule = "polynomial" if args.finetune_epochs > 0 else "oneshot"
        pruner = MagnitudePruner(sparsity=amount, schedule=schedule)
    return PrunedCNNClassifier(clf, pruner, **_estimator_params(args, "PrunedCNNClassifier"))


def _refit_decision_out_of_fold(args, estimator, X, y, scores, proba=None):
    """Fit the saved model's temperature and threshold on the folds' out-of-fold probabilities.

    Its own validation split holds ``validation_fraction`` of the images; the
    out-of-fold probabilities cover all of them, each from a model that never
    trained on it (scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).
    """
    owner = owner_of(estimator)
    if owner.calibration is None and owner.target_sensitivity is None:
        return  # neither calibration nor a target sensitivity: nothing to refit, no prediction pass
    before = temperature_of(estimator), decision_of(estimator)[0]
    if any(not np.array_equal(model.classes_, estimator.classes_) for model in scores["estimator"]):
        log(args, "a fold lacked a class: the saved model keeps its validation split's temperature and "
                   "threshold")
        return
    if proba is None:
        proba = out_of_fold_proba(scores["estimator"], scores["indices"]["test"], X)
    refit_decision(estimator, proba, y)
    after = temperature_of(estimator), decision_of(estimator)[0]
    said = [f"{name} {'none' if old is None else f'{old:.4f}'} -> {new:.4f}"
            for name, old, new in zip(("temperature", "threshold"), before, after) if new is not None]
    if said:
        log(args, f"{' and '.join(said)}: fitted on the out-of-fold probabilities of all {len(X)} images "
                   "instead of the refit's validation split")


def _parts(estimator, n_fit, held_out=None):
    """One line: the slices the saved model trained on, validated on inside ``fit``, and held out for the report.

    With a ``calibration``, it also says whether a temperature was fitted:
    ``"auto"`` leaves it at 1, without a warning, where the validation split
    is too small to trust.
    """
    owner = owner_of(estimator)
    n_validation = len(owner.validation_indices_)
    line = f"parts: training {n_fit - n_validation}, validation {n_validation}"
    if held_out is not None:
        line += f", held out {held_out} (the report)"
    if getattr(owner, "calibration", None) is not None:
        temperature = temperature_of(estimator)
        line += ("; temperature: none fitted (no validation split large enough to trust)" if temperature is None
                 else f"; temperature: {temperature:.4f}")
    if getattr(owner, "crop", None) == "lungs":
        line += f"; lungs not found in {getattr(owner, 'crop_missed_', 0)} training slices (cut to the body)"
    return line


def _sources_line(y, sources):
    return "; ".join(f"{source}: {(sources == source).sum()} ({class_counts(y[sources == source])})"
                     for source in np.unique(sources))


def print_by_source(y, proba, classes, sources, title, threshold=None):
    """One line of metrics per source: how the model does in each hospital, not only on their mix."""
    print(title)
    for source, values in scores_by_group(y, proba, classes, sources, threshold=threshold).items():
        shown = "  ".join(f"{name} {values[name]:.4f}" for name in METRICS)
        print(f"  {source} ({values['n']} slices): {shown}")


def _cv_splits(args, X, y, units, unit, sources):
    """The splitter (or list of splits) of ``--cv``, and the line that says what it is."""
    if args.cv == "sources":
        if sources is None:
            raise CommandError("--cv sources leaves each source out in turn: give two DATA_DIR folders or more.")
        splits = list(LeaveOneGroupOut().split(X, y, sources))
        return splits, (f"leave-one-source-out cross-validation: {len(splits)} folds, each scoring one source "
                        "with a model trained on the others")
    if units is None:
        return (StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state),
                f"{args.cv}-fold stratified cross-validation by slice (seed {args.random_state})")
    what = "patient" if unit == "patient" else (
        f"block of {args.block_size} consecutive slices per class (BlockedStratifiedKFold's blocks)")
    cv = StratifiedGroupKFold(args.cv, shuffle=True, random_state=args.random_state)
    # Precomputed, so that fit's own validation split still gets the patients (or blocks) as groups.
    return (list(cv.split(X, y, units)),
            f"{args.cv}-fold stratified cross-validation by {what} (StratifiedGroupKFold, seed {args.random_state})")


def _cross_validate(args, estimator, X, y, units, unit, sources):
    """``--cv``: the folds' scores printed, then the saved model (refitted, or the folds' ensemble)."""
    cv, said = _cv_splits(args, X, y, units, unit, sources)
    log(args, said)
    try:
        # Metadata routing hands the patients (or blocks) to fit's validation split.
        with sklearn.config_context(enable_metadata_routing=True):
            estimator.set_fit_request(groups=True)
            scores = cross_validate(estimator, X, y, cv=cv, scoring=make_scoring(), error_score="raise",
                                    params={"groups": units}, return_estimator=True, return_indices=True)
    except InvalidParameterError as exc:
        # cross_validate reports the estimator's parameter errors under its own name.
        raise exc.__cause__ or exc
    for name in METRICS:
        values = scores[f"test_{name}"]
        print(f"{name:>12}: {values.mean():.4f} +/- {values.std():.4f}  "
              f"(folds: {', '.join(f'{v:.4f}' for v in values)})")
    oof_proba = None
    if sources is not None:
        oof_proba = out_of_fold_proba(scores["estimator"], scores["indices"]["test"], X)
        print_by_source(y, oof_proba, scores["estimator"][0].classes_, sources,
                        "out-of-fold metrics by source (each slice scored by the fold model that did not train "
                        "on it; most probable class):")
    if args.ensemble:
        log(args, f"the saved model averages the probabilities of the {len(scores['estimator'])} fold models "
                  "(soft voting)")
        # Frozen: fitting the ensemble only records the classes; the fold models stay as trained.
        return VotingClassifier([(f"fold_{i}", FrozenEstimator(model))
                                 for i, model in enumerate(scores["estimator"])], voting="soft").fit(X, y)
    log(args, "refitting on all images for the saved model")
    with warnings.catch_warnings():
        # The refit's temperature is replaced below, so a bound its validation split reached is moot.
        warnings.filterwarnings("ignore", "The temperature fitted on the", UserWarning)
        estimator.fit(X, y, groups=units)
    print(_parts(estimator, len(X)))
    _refit_decision_out_of_fold(args, estimator, X, y, scores, oof_proba)
    return estimator


def _fit_held_out(args, estimator, X, y, train, fit_groups):
    """Fit on ``train``; for a pruned model also the unpruned one, returned to compare with (else None)."""
    if not isinstance(estimator, PrunedCNNClassifier):
        estimator.fit(X[train], y[train], groups=fit_groups)
        return None
    # The unpruned network, trained as the pruned fit would train it, is scored on the held-out
    # split too: the pruning's difference and p-value.
    params = estimator.get_params(deep=False)
    unpruned = clone(estimator.estimator).fit(X[train], y[train], groups=fit_groups)
    estimator.set_params(estimator=unpruned, prefit=True)
    estimator.fit(X[train], y[train], groups=fit_groups)
    estimator.set_params(**params)  # what the fit equals: prefit=False, the unfitted estimator
    return unpruned


def _hold_out(args, estimator, X, y, groups, units, unit, sources):
    """Without ``--cv``: fit on a split, score and report the held-out part; returns the fitted model."""
    train, test, said = held_out_split(args, y, units, unit, sources)
    log(args, said)
    unpruned = _fit_held_out(args, estimator, X, y, train, None if units is None else units[train])
    print(_parts(estimator, len(train), held_out=len(test)))
    proba = predict_in_chunks(estimator, X[test], quiet=args.quiet)
    report = evaluate(estimator, X[test], y[test], proba=proba, random_state=args.random_state,
                      groups=None if groups is None else groups[test])
    print("held-out metrics:")
    print(report.summary())
    if sources is not None:
        print_by_source(y[test], proba, estimator.classes_, sources[test], "held-out metrics by source:",
                        threshold=decision_of(estimator)[0])
    if unpruned is not None:
        unpruned_proba = predict_in_chunks(unpruned, X[test], quiet=args.quiet)
        pos_label, thresholds = decisions([estimator, unpruned], None)
        comparison = compare(y[test], proba, unpruned_proba, classes=estimator.classes_, pos_label=pos_label,
                             random_state=args.random_state, **thresholds)
        print("pruned vs unpruned on the held-out split: "
              + format_comparison(comparison, "pruned", "unpruned", unit="images"))
    if args.report:
        report.save(args.report)
        log(args, f"report written to {Path(args.report) / 'index.html'}")
    return estimator


def run(args):
    start = time.perf_counter()
    X, y, groups, has_patients, sources = load_folders(args.data_dirs, args.skip_unreadable)
    where = ", ".join(map(str, args.data_dirs))
    groups = patients_of(args, groups, has_patients, where)
    patients = "" if groups is None else f" of {len(np.unique(groups))} patients"
    log(args, f"{len(X)} images{patients} in {where} ({class_counts(y)})")
    if sources is not None:
        log(args, f"{len(np.unique(sources))} sources: {_sources_line(y, sources)}")
    estimator = build_estimator(args, verbose=0 if args.quiet else 1)
    # Patients, or blocks of consecutive slices (--split blocked), stay on one side of every split.
    units, unit = split_units(args, X, y, groups, sources)
    if args.cv:
        estimator = _cross_validate(args, estimator, X, y, units, unit, sources)
    else:
        estimator = _hold_out(args, estimator, X, y, groups, units, unit, sources)
    print_pruning(estimator)
    save_model(estimator, args.out)
    print(f"model saved to {args.out} ({time.perf_counter() - start:.0f} s)")
