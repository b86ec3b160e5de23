"""``skcovid export``: write a saved model for deployment (ONNX, INT8 with mixed precision, or torch.export)."""

import logging
import os
import tempfile
import time

import numpy as np

from skcovid._cli.common import class_counts, load_model_file, log
from skcovid._cli.data import load_folder
from skcovid._cli.main import CommandError
from skcovid._deploy.export import MAX_CALIBRATION, export
from skcovid._deploy.onnx_runtime import load_onnx


def _folder(path, args, what):
    X, y, _, _ = load_folder(path, args.skip_unreadable)
    if not len(X):
        raise CommandError(f"--{what} {path} holds no images.")
    log(args, f"{what}: {len(X)} images in {path} ({class_counts(y)})")
    return X, y


def _scores(figures):
    return f"accuracy {figures['accuracy']:.4f}, ROC-AUC {figures['roc_auc']:.4f}"


def _latency_ms(model, images, repeats=10):
    """Median milliseconds of one slice through an ONNX model at batch 1 (after one warm-up run)."""
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        model.predict_proba(images[i % len(images):i % len(images) + 1])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:]))


def _float_comparison(estimator, path, X):
    """Size, batch-1 latency and label agreement of the written INT8 file against the float32 ONNX model."""
    with tempfile.TemporaryDirectory() as tmp:
        float_path = export(estimator, os.path.join(tmp, "float32.onnx"), format="onnx")
        size, float_size = os.path.getsize(path), os.path.getsize(float_path)
        sample = X[:32]
        int8_model, float_model = load_onnx(path), load_onnx(float_path)
        same = np.mean(int8_model.predict(sample) == float_model.predict(sample))
        int8_ms, float_ms = _latency_ms(int8_model, sample), _latency_ms(float_model, sample)
    return (f"wrote {path} ({size / 1e6:.2f} MB; the float32 ONNX file is {float_size / 1e6:.2f} MB: "
            f"{size / float_size:.0%} of it); batch 1, median of 10 slices read from files: {int8_ms:.1f} ms "
            f"against {float_ms:.1f} ms in float32 ({float_ms / int8_ms:.2f}x); same labels as float32 on "
            f"{len(sample)} calibration slices: {same:.1%}")


def run(args):
    if not args.int8:
        for flag, value in (("--calibration", args.calibration), ("--validation", args.validation),
                            ("--tolerance", args.tolerance)):
            if value is not None:
                raise CommandError(f"{flag} applies to --int8 only.")
        if args.equalize:
            raise CommandError("--equalize applies to --int8 only.")
    elif args.calibration is None:
        raise CommandError("--int8 needs --calibration DIR: a folder of training slices of each class "
                           "(one sub-folder per class), to measure the activations' ranges.")
    estimator = load_model_file(args.model, args, onnx=False)
    options = {}
    if args.int8:
        X, _ = _folder(args.calibration, args, "calibration")
        # A stratified-enough sample: class folders come sorted by class, and export takes the first slices.
        order = np.random.RandomState(0).permutation(len(X))[:MAX_CALIBRATION]
        options.update(quantize="int8", calibration=X[order], tolerance=args.tolerance,
                       equalize=args.equalize)
        if args.validation is not None:
            options["validation"] = _folder(args.validation, args, "validation")
        logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's quantiser logs per tensor
    path = export(estimator, args.out, format=args.format, **options)
    size = os.path.getsize(path)
    if not args.int8:
        print(f"wrote {path} ({size / 1e6:.2f} MB)")
        return
    record = load_onnx(path).metadata["quantization"]
    total, kept = record["n_quantizable_nodes"], record["float_nodes"]
    if record["dtype"] == "float32":
        what = f"no node in int8: every one of the {total} quantisable nodes lost more than the tolerance"
    else:
        what = f"{total - len(kept)} of {total} quantisable nodes in int8"
        what += (f"; {len(kept)} stayed float32 ({len(record['excluded_nodes'])} returned by the tolerance loop): "
                 f"{', '.join(kept)}" if kept else ", none kept in float32")
    equalized = f", {record['n_equalized_pairs']} pairs of layers equalised" if record["equalization"] else ""
    print(f"quantised ({record['n_calibration_images']} calibration slices{equalized}): {what}")
    figures = record["validation"]
    if figures is not None:
        tolerance = "" if args.tolerance is None else f", tolerance {args.tolerance:g}"
        print(f"validation ({figures['n_images']} slices{tolerance}): float32 {_scores(figures['float32'])}; "
              f"written model {_scores(figures['quantized'])}")
        if kept:
            print(f"  with every node in int8 it would score {_scores(figures['all_int8'])}")
    agreement = record.get("agreement")
    if agreement is not None:
        print(f"agreement with float32 on {agreement['n_images']} calibration slices (no labels; tolerance "
              f"{record['tolerance']:g}): {agreement['quantized']['label_agreement']:.1%} same labels, mean "
              f"|p - p float32| {agreement['quantized']['mean_abs_diff']:.4f}"
              + (f" (every node in int8: {agreement['all_int8']['label_agreement']:.1%}, "
                 f"{agreement['all_int8']['mean_abs_diff']:.4f})" if kept else ""))
    print(_float_comparison(estimator, path, options["calibration"]))
