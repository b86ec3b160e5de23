"""What the commands share: loading a model file, reading a labelled folder, logging, predicting in chunks."""

import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from skcovid._cli.data import load_folder, patients_of
from skcovid._cli.main import CommandError
from skcovid._core.files import atomic_write
from skcovid._decision.fit import decision_of
from skcovid._deploy.onnx_cache import cache_path
from skcovid._deploy.onnx_runtime import load_onnx
from skcovid._deploy.persistence import load_model
from skcovid._evaluation.explain import plot_feature_maps, plot_grad_cam


def log(args, message):
    if not getattr(args, "quiet", False):
        print(message, flush=True)


def class_counts(y):
    labels, counts = np.unique(np.asarray(y, dtype=str), return_counts=True)
    return ", ".join(f"{label}: {count}" for label, count in zip(labels, counts))


def predict_in_chunks(estimator, X, *, quiet, chunk=256):
    """``predict_proba`` in chunks, with a progress bar over the images."""
    proba = []
    with tqdm(total=len(X), desc="predicting", unit="img", disable=quiet, file=sys.stderr) as bar:
        for start in range(0, len(X), chunk):
            part = X[start:start + chunk]
            proba.append(estimator.predict_proba(part))
            bar.update(len(part))
    return np.concatenate(proba)


def load_model_file(path, args, *, onnx=True, runtime=None):
    """The model at ``path``: an ONNX export when ``onnx``, else as ``runtime`` (default: ``--runtime``) says.

    ``--trust-pickle`` comes from ``args``; commands without ``--runtime``
    get the PyTorch estimator.
    """
    if str(path).lower().endswith(".onnx"):
        if not onnx:
            raise CommandError(f"{path} is an ONNX export: '{args.command}' needs the model file "
                               "that 'skcovid train' or save_model wrote.")
        return load_onnx(path)
    runtime = runtime or getattr(args, "runtime", "torch")
    if runtime != "torch" and Path(path).is_file():
        cached = cache_path(path)
        if not cached.is_file() and not cached.with_suffix(".refused").is_file():
            if not getattr(args, "quiet", False):  # on stderr: stdout holds the predictions
                print(f"exporting {path} to ONNX once (ONNX Runtime predicts faster), into {cached}",
                      file=sys.stderr, flush=True)
    return load_model(path, trusted=args.trust_pickle, runtime=runtime)


def labelled_folder(args, classes):
    """The images, labels and patients (or None) of ``args.data_dir``, whose classes must be ``classes``."""
    X, y, groups, has_patients = load_folder(args.data_dir, args.skip_unreadable)
    groups = patients_of(args, groups, has_patients, args.data_dir)
    unknown = sorted(set(y) - set(classes))
    if unknown:
        raise CommandError(f"{args.data_dir} has class folders {unknown} the model does not know; "
                           f"its classes are {list(classes)}.")
    patients = "" if groups is None else f" of {len(np.unique(groups))} patients"
    log(args, f"{len(X)} images{patients} in {args.data_dir} ({class_counts(y)})")
    return X, y, groups


def print_pruning(estimator):
    report = getattr(estimator, "pruning_report", None)
    if report is None:
        return
    r = report()
    print(f"pruning: parameters {r['n_params_before']:,} -> {r['n_nonzero_params']:,} non-zero "
          f"(-{r['params_reduction']:.1%}), FLOPs {r['flops_before']:,} -> {r['flops']:,} "
          f"(-{r['flops_reduction']:.1%}), size {r['model_size_bytes_before'] / 2**20:.2f} -> "
          f"{r['model_size_bytes'] / 2**20:.2f} MiB")


def write_explanations(estimator, files, out_dir, *, layer, target, feature_maps, quiet):
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


def decisions(models, pos_label):
    """The positive class and ``compare``'s ``threshold_a`` and ``threshold_b``: each model's own decision."""
    decisions = [decision_of(model) for model in models]
    labels = {str(label) for threshold, label in decisions if threshold is not None}
    if (pos_label is not None and labels - {str(pos_label)}) or len(labels) > 1:
        raise CommandError(f"The models' thresholds are on the probability of {sorted(labels)}, not of one "
                           f"positive class{'' if pos_label is None else f' {pos_label!r} (--pos-label)'}.")
    if pos_label is None and labels:
        pos_label = next(label for threshold, label in decisions if threshold is not None)
    return pos_label, {"threshold_a": decisions[0][0], "threshold_b": decisions[1][0]}
