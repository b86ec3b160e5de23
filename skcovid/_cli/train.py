"""``skcovid train``: fit on a class folder, score a held-out split or K folds, save the model."""

import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_validate

from skcovid._cli.common import class_counts, decisions, log, predict_in_chunks, print_pruning
from skcovid._cli.data import held_out_split, load_folder, patients_of, split_units
from skcovid._cli.options import FROM_RECIPE, MODEL_OPTIONS
from skcovid._core.compat import InvalidParameterError
from skcovid._core.estimator import owner as owner_of
from skcovid._decision.fit import decision_of, out_of_fold_proba, refit_decision, temperature_of
from skcovid._deploy.persistence import save_model
from skcovid._estimators.pruned import PrunedCNNClassifier
from skcovid._estimators.recipes import recipe
from skcovid._evaluation.comparison import compare, format_comparison
from skcovid._evaluation.metrics import make_scoring
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


def _refit_decision_out_of_fold(args, estimator, X, y, scores):
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
    refit_decision(estimator, out_of_fold_proba(scores["estimator"], scores["indices"]["test"], X), y)
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
    return line


def run(args):
    start = time.perf_counter()
    X, y, groups, has_patients = load_folder(args.data_dir, args.skip_unreadable)
    groups = patients_of(args, groups, has_patients, args.data_dir)
    patients = "" if groups is None else f" of {len(np.unique(groups))} patients"
    log(args, f"{len(X)} images{patients} in {args.data_dir} ({class_counts(y)})")
    estimator = build_estimator(args, verbose=0 if args.quiet else 1)
    # Patients, or blocks of consecutive slices (--split blocked), stay on one side of every split.
    units, unit = split_units(args, X, y, groups)
    if args.cv:
        if units is None:
            cv = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
            log(args, f"{args.cv}-fold stratified cross-validation by slice (seed {args.random_state})")
        else:
            cv = StratifiedGroupKFold(args.cv, shuffle=True, random_state=args.random_state)
            what = "patient" if unit == "patient" else (
                f"block of {args.block_size} consecutive slices per class (BlockedStratifiedKFold's blocks)")
            log(args, f"{args.cv}-fold stratified cross-validation by {what} (StratifiedGroupKFold, "
                       f"seed {args.random_state})")
        try:
            # Metadata routing hands the patients to the folds and to fit's validation split.
            with sklearn.config_context(enable_metadata_routing=True):
                estimator.set_fit_request(groups=True)
                scores = cross_validate(estimator, X, y, cv=cv, scoring=make_scoring(),
                                        error_score="raise", params={"groups": units},
                                        return_estimator=True, return_indices=True)
        except InvalidParameterError as exc:
            # cross_validate reports the estimator's parameter errors under its own name.
            raise exc.__cause__ or exc
        for name in METRICS:
            values = scores[f"test_{name}"]
            print(f"{name:>12}: {values.mean():.4f} +/- {values.std():.4f}  "
                  f"(folds: {', '.join(f'{v:.4f}' for v in values)})")
        if args.ensemble:
            log(args, f"the saved model averages the probabilities of the {args.cv} fold models (soft voting)")
            # Frozen: fitting the ensemble only records the classes; the fold models stay as trained.
            estimator = VotingClassifier([(f"fold_{i}", FrozenEstimator(model))
                                          for i, model in enumerate(scores["estimator"])],
                                         voting="soft").fit(X, y)
        else:
            log(args, "refitting on all images for the saved model")
            with warnings.catch_warnings():
                # The refit's temperature is replaced below, so a bound its validation split reached is moot.
                warnings.filterwarnings("ignore", "The temperature fitted on the", UserWarning)
                estimator.fit(X, y, groups=units)
            print(_parts(estimator, len(X)))
            _refit_decision_out_of_fold(args, estimator, X, y, scores)
    else:
        train, test, said = held_out_split(args, y, units, unit)
        log(args, said)
        fit_groups = None if units is None else units[train]
        unpruned_proba = None
        if isinstance(estimator, PrunedCNNClassifier):
            # The unpruned network, trained as the pruned fit would train it, is scored on the held-out
            # split too: the pruning's difference and p-value.
            params = estimator.get_params(deep=False)
            unpruned = clone(estimator.estimator).fit(X[train], y[train], groups=fit_groups)
            unpruned_proba = predict_in_chunks(unpruned, X[test], quiet=args.quiet)
            estimator.set_params(estimator=unpruned, prefit=True)
            estimator.fit(X[train], y[train], groups=fit_groups)
            estimator.set_params(**params)  # what the fit equals: prefit=False, the unfitted estimator
        else:
            estimator.fit(X[train], y[train], groups=fit_groups)
        print(_parts(estimator, len(train), held_out=len(test)))
        proba = predict_in_chunks(estimator, X[test], quiet=args.quiet)
        report = evaluate(estimator, X[test], y[test], proba=proba, random_state=args.random_state,
                          groups=None if groups is None else groups[test])
        print("held-out metrics:")
        print(report.summary())
        if unpruned_proba is not None:
            pos_label, thresholds = decisions([estimator, unpruned], None)
            comparison = compare(y[test], proba, unpruned_proba, classes=estimator.classes_, pos_label=pos_label,
                                 random_state=args.random_state, **thresholds)
            print("pruned vs unpruned on the held-out split: "
                  + format_comparison(comparison, "pruned", "unpruned", unit="images"))
        if args.report:
            report.save(args.report)
            log(args, f"report written to {Path(args.report) / 'index.html'}")
    print_pruning(estimator)
    save_model(estimator, args.out)
    print(f"model saved to {args.out} ({time.perf_counter() - start:.0f} s)")
