"""Point-of-care deployment: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8 (all-int8 and mixed precision).

For EfficientNet-Lite0 (its bundled ImageNet weights, fine-tuned), ResNet18 and
ResNet34 (trained from random weights: their ImageNet weights cannot be
downloaded here), each unpruned and structurally pruned (``StructuredPruner``
at ``--ratio``, channel counts multiples of 8, then fine-tuned), on one
stratified 80/20 split of the 2479 distinct SARS-CoV-2 slices (seed 0), of
whose 80% ``--n-validation`` slices (stratified, seed 0) are held out from
training for the INT8 tolerance loop:

- accuracy and ROC-AUC on the 20% test slices, for the same fitted model run
  by PyTorch (``predict_proba``), by ONNX Runtime from ``export(...,
  format="onnx")`` and by ONNX Runtime from four INT8 exports (calibrated on
  128 training slices, stratified, seed 0; scored on the validation slices):
  every node in INT8; mixed precision (``tolerance=--tolerance``); both after
  cross-layer equalisation (``equalize=True``), read by
  :func:`skcovid.load_onnx`, with the number of nodes that stayed float;
- batch-1 and batch-16 latency per image of the exported network (resize to
  the input size, window, normalisation and softmax included) on
  ``--threads`` threads, median of ``--repeats`` runs, the runtimes timed one
  right after the other in this process, and the speed-up over the unpruned
  PyTorch fp32 model timed in the same round;
- size on disk: the ``.pt2`` file (``torch.export``) for PyTorch, the ``.onnx``
  files for ONNX Runtime.

Usage::

    python benchmarks/bench_deploy.py [--image-size 128] [--threads 2] [--tolerance 0.005]
        [--models efficientnet_lite0 resnet18 resnet34] [--cache DIR]

Prints a Markdown table (the one in docs/guide/deployment.md).
"""

import argparse
import logging
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from _slices import classifier, machine, real_slices
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

from skcovid import PrunedCNNClassifier, export, load_model, load_onnx, save_model
from skcovid._core.estimator import fitted_network
from skcovid._deploy.export import deployable_net
from skcovid.pruning import StructuredPruner, count_flops

#: Training settings per backbone, fixed before any run (not tuned on the test slices).
RECIPES = {
    "efficientnet_lite0": dict(weights="DEFAULT", lr=3e-4, max_epochs=4),
    "resnet18": dict(weights=None, lr=1e-3, max_epochs=3),
    "resnet34": dict(weights=None, lr=1e-3, max_epochs=3),
}


def split(args):
    """Training, calibration, validation and test slices, all stratified with seed 0.

    The test slices are 20% of all; the rest is the training part, of which
    ``--n-validation`` slices are held out from fitting for the INT8 tolerance
    loop and 128 of the remaining ones calibrate the quantiser.
    """
    X, y = real_slices(args.n_slices, data_dir=args.data_dir)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    X_train, X_val, y_train, y_val = train_test_split(X_train, y_train, test_size=args.n_validation,
                                                      stratify=y_train, random_state=0)
    X_calib, _, _, _ = train_test_split(X_train, y_train, train_size=128, stratify=y_train, random_state=0)
    return X_train, y_train, X_calib, X_val, y_val, X_test, y_test


def _cached(path, fit):
    """The model saved at ``path``, else ``fit()`` saved there (reruns skip the training)."""
    if path is not None and os.path.isfile(path):
        return load_model(path)
    estimator = fit()
    if path is not None:
        save_model(estimator, path)
    return estimator


def fitted_models(name, args, X_train, y_train):
    """The unpruned and the structured-pruned model of backbone ``name``, trained (or read from --cache)."""
    key = f"{name}-{args.image_size}px-{args.n_slices or 'all'}-val{args.n_validation}"
    cache = (lambda suffix: os.path.join(args.cache, f"{key}-{suffix}.skcovid")) if args.cache else (
        lambda suffix: None)
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    dense = _cached(cache("dense"), lambda: classifier(
        backbone=name, freeze="none", image_size=args.image_size, batch_size=32, augment=None,
        validation_fraction=None, early_stopping=None, random_state=0, **RECIPES[name],
    ).fit(X_train, y_train))
    pruned = _cached(cache(f"structured{args.ratio}-ft{args.finetune_epochs}"), lambda: PrunedCNNClassifier(
        dense, StructuredPruner(ratio=args.ratio, round_to=8), finetune_epochs=args.finetune_epochs,
        finetune_lr=RECIPES[name]["lr"] / 3, prefit=True).fit(X_train, y_train))
    return dense, pruned


def _median_seconds(run, repeats):
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _latencies(runners, size, repeats):
    """Median seconds per image of each runner, batch 1 then 16, timed back to back."""
    out = {name: [] for name in runners}
    for batch in (1, 16):
        x = np.random.RandomState(0).rand(batch, 1, size, size).astype(np.float32)
        for name, run in runners.items():
            out[name].append(_median_seconds(lambda: run(x), repeats) / batch)
    return out


def _torch_runner(estimator):
    model = deployable_net(estimator)[1].eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x))
    return run


def _onnx_runner(model):
    return lambda x: model.session.run(None, {"image": x})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--ratio", type=float, default=0.4,
                        help="StructuredPruner ratio (0.4 removes about 60%% of the FLOPs)")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(RECIPES))
    parser.add_argument("--n-slices", type=int, default=None, help="a stratified sample (a quick check)")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="accuracy and ROC-AUC the mixed-precision INT8 models may lose on the validation slices")
    parser.add_argument("--n-validation", type=int, default=400,
                        help="training-part slices held out from fitting, for the INT8 tolerance loop")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--write-split", default=None, metavar="DIR",
                        help="only write the split as DIR/train, val and test class folders (symbolic links), "
                             "for the skcovid command")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="save the fitted models here and reuse them on later runs of the same settings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's quantiser logs per tensor
    X_train, y_train, X_calib, X_val, y_val, X_test, y_test = split(args)
    if args.write_split:
        for part, X, y in (("train", X_train, y_train), ("val", X_val, y_val), ("test", X_test, y_test)):
            for path, label in zip(X, y):
                os.makedirs(os.path.join(args.write_split, part, label), exist_ok=True)
                os.symlink(os.path.abspath(path), os.path.join(args.write_split, part, label, os.path.basename(path)))
        print(f"wrote {args.write_split}/train, val and test: class folders of symbolic links")
        return
    positive = "COVID"
    print(f"{machine()}; image {args.image_size} px; {len(X_train)} training / {len(X_val)} validation / "
          f"{len(X_test)} test slices (stratified 80/20, validation held out of the 80%, seed 0); "
          f"{args.threads} threads; structured ratio {args.ratio}; INT8 tolerance {args.tolerance}\n")
    print("| model | pruning | runtime | float nodes | accuracy | ROC-AUC | size (MB) | ms/image b1 "
          "| ms/image b16 | speed-up b1 | speed-up b16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    folder = tempfile.mkdtemp(prefix="bench_deploy_")
    shape = (1, 1, args.image_size, args.image_size)
    int8 = dict(quantize="int8", calibration=X_calib, validation=(X_val, y_val))
    variants = {"ORT INT8": {}, "ORT INT8 mixed": dict(tolerance=args.tolerance),
                "ORT INT8 CLE": dict(equalize=True),
                "ORT INT8 CLE mixed": dict(equalize=True, tolerance=args.tolerance)}
    for name in args.models:
        start = time.perf_counter()
        dense, pruned = fitted_models(name, args, X_train, y_train)
        fit_s = time.perf_counter() - start
        reference = None
        for label, estimator in (("none", dense), (f"structured {args.ratio}", pruned)):
            stem = os.path.join(folder, f"{name}-{label.split()[0]}")
            files = {"PyTorch fp32": export(estimator, stem + ".pt2"),
                     "ORT fp32": export(estimator, stem + ".onnx")}
            start = time.perf_counter()
            for runtime, options in variants.items():
                files[runtime] = export(estimator, f"{stem}-{runtime.replace(' ', '-')}.onnx", **int8, **options)
            int8_s = time.perf_counter() - start
            onnx_models = {k: load_onnx(f, n_threads=args.threads) for k, f in files.items() if k != "PyTorch fp32"}
            probas = {"PyTorch fp32": estimator.predict_proba(X_test)}
            probas.update({k: m.predict_proba(X_test) for k, m in onnx_models.items()})
            runners = {"PyTorch fp32": _torch_runner(estimator)}
            runners.update({k: _onnx_runner(m) for k, m in onnx_models.items()})
            if reference is None:
                reference = runners["PyTorch fp32"]
            else:  # the unpruned PyTorch model, timed in the same round as these
                runners = {"reference": reference, **runners}
            times = _latencies(runners, args.image_size, args.repeats)
            base = times.get("reference", times["PyTorch fp32"])
            _, network, _ = fitted_network(estimator)
            gflops = count_flops(network, shape) / 1e9
            for runtime in files:
                proba = probas[runtime]
                column = list(estimator.classes_).index(positive)
                predicted = estimator.classes_[proba.argmax(axis=1)]
                ms = [1e3 * t for t in times[runtime]]
                record = onnx_models[runtime].metadata["quantization"] if runtime in onnx_models else None
                nodes = "-" if record is None else f"{len(record['float_nodes'])}/{record['n_quantizable_nodes']}"
                print(f"| {name} ({gflops:.2f} GFLOPs) | {label} | {runtime} | {nodes} "
                      f"| {accuracy_score(y_test, predicted):.4f} "
                      f"| {roc_auc_score(y_test == positive, proba[:, column]):.4f} "
                      f"| {os.path.getsize(files[runtime]) / 1e6:.2f} | {ms[0]:.2f} | {ms[1]:.2f} "
                      f"| {base[0] / times[runtime][0]:.2f} | {base[1] / times[runtime][1]:.2f} |",
                      flush=True)
            for runtime in variants:
                figures = onnx_models[runtime].metadata["quantization"]["validation"]
                print(f"<!-- {name} {label} {runtime}: validation accuracy / ROC-AUC fp32 "
                      f"{figures['float32']['accuracy']:.4f} / {figures['float32']['roc_auc']:.4f}, written "
                      f"{figures['quantized']['accuracy']:.4f} / {figures['quantized']['roc_auc']:.4f}; "
                      f"{figures['n_models_measured']} models measured -->", flush=True)
            print(f"<!-- {name} {label}: the four INT8 exports took {int8_s:.0f} s -->", flush=True)
        print(f"<!-- {name}: training and pruning took {fit_s:.0f} s (0 when read from --cache) -->", flush=True)


if __name__ == "__main__":
    main()
