"""Where the time of a prediction goes: each stage alone, and end to end, for DICOM series and PNG slices.

The model (``--recipe``: by default the default recipe, ``TransferCNNClassifier()``:
EfficientNet-Lite2 with its ImageNet weights, 260 px, the body crop and flip
test-time augmentation; ``finetune`` is EfficientNet-Lite0 at 224 px, flip test-time
augmentation), fitted for one epoch on a few slices (its weights do not change
the timings), predicts

- the real DICOM series of ``--dicom-dir`` (the COVID-CT-MD sample: 6 patients,
  60 JPEG-Lossless slices of 512 x 512), and
- ``--n-png`` PNG slices of the SARS-CoV-2 CT-scan set (``--png-dir``).

For each, in one run: decoding alone (one thread, and the prefetching threads
of skcovid's inference path), windowing and resizing alone, the network alone
(PyTorch and ONNX Runtime, with and without test-time augmentation, batches of
the model's ``batch_size``), then ``predict_proba`` end to end (PyTorch with
decoding one slice after the other, as skcovid 0.1 did; PyTorch and ONNX
Runtime, the latter as ``load_model(..., runtime="onnx")`` gives it, with 1
and 2 decoding threads) and the ``skcovid predict`` command (its default
decoding threads) with each ``--runtime``: ``auto`` (the default), ``torch`` and
``onnx``. Rates are slices per second, best of ``--passes``;
the limit is the slowest stage of the pipeline, each stage at its own rate.

Usage::

    python benchmarks/bench_predict.py [--recipe frozen-lite2] [--dicom-dir ../shared/data/covid-ct-md-sample]
        [--png-dir ../shared/data/sarscov2-ctscan] [--n-png 200] [--passes 3]
"""

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from _slices import machine, real_slices
from torchvision.transforms import v2

import skcovid._engine.inference as inference
from skcovid import RECIPES, export, load_model, load_onnx, recipe, save_model
from skcovid._cli.main import main as skcovid_command
from skcovid._core.parallel import decode_threads, ordered_map
from skcovid._engine.data import ImageDataset
from skcovid._estimators.recipes import DEFAULT_RECIPE
from skcovid._imaging.crop import crop_image
from skcovid._imaging.medical import read_hu
from skcovid._imaging.raster import read_gray
from skcovid._imaging.window import apply_window
from skcovid._nets.network import ViewAverage, eval_mode
from skcovid.datasets import load_dicom_folder

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_rate(run, n, passes):
    """Items per second of the fastest of ``passes`` calls of ``run`` over ``n`` items."""
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


@contextlib.contextmanager
def serial_decoding():
    """skcovid 0.1's inference path: each slice decoded when the loader asks for it."""
    original = inference.forward_dataset
    inference.forward_dataset = lambda net, images, size: ImageDataset(images, None, size)
    try:
        yield
    finally:
        inference.forward_dataset = original


@contextlib.contextmanager
def decoding_threads(n):
    """The inference path with ``n`` decoding threads (``$SKCOVID_DECODE_THREADS``)."""
    before = os.environ.get("SKCOVID_DECODE_THREADS")
    os.environ["SKCOVID_DECODE_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SKCOVID_DECODE_THREADS"]
        else:
            os.environ["SKCOVID_DECODE_THREADS"] = before


def decoders(files):
    """pydicom's decoding plugin for each transfer syntax of ``files``, and the ones it could use."""
    found = {}
    for path in files:
        syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if syntax not in found:
            from pydicom.pixels.decoders.base import get_decoder

            decoder = get_decoder(syntax)
            found[syntax] = (syntax.name, list(decoder.available_plugins))
    return found


def stages(name, files, reader, model, onnx_model, passes):
    """One row per stage: (stage, slices/s)."""
    n, size, batch = len(files), model.image_size, model.batch_size
    rows = [("decode, 1 thread", best_rate(lambda: [reader(f) for f in files], n, passes)),
            ("decode, 2 threads (ordered, bounded)",
             best_rate(lambda: list(ordered_map(reader, files, n_threads=2)), n, passes))]
    raw = [reader(f) for f in files]
    window, hu = (model.window if name == "dicom" else None), name == "dicom"

    def preprocess():
        for image in raw:
            cropped = crop_image(image, model.crop, hu=hu)
            x = torch.from_numpy(np.ascontiguousarray(apply_window(cropped, window, hu=hu)))
            v2.functional.resize(x, [size, size], antialias=True)

    rows.append((f"{'crop, ' if model.crop else ''}window and resize", best_rate(preprocess, n, passes)))
    module = model.net_.module_
    x = torch.rand(batch, 1, size, size)
    for label, network in (("network, PyTorch, no TTA", module), ("network, PyTorch, flip TTA",
                                                                   ViewAverage(module, "flip"))):
        def forward(network=network):
            with eval_mode(network), torch.no_grad():
                for _ in range(0, n, batch):
                    network(x)
        rows.append((label, best_rate(forward, n, passes)))
    session, input_name = onnx_model.session, onnx_model.session.get_inputs()[0].name
    side = np.asarray(raw[0]).shape[-1]
    pixels = np.random.RandomState(0).rand(batch, 1, side, side).astype(np.float32)
    rows.append((f"network, ONNX Runtime, {model.tta or 'no'} TTA ({side} px in, resized inside)",
                 best_rate(lambda: [session.run(None, {input_name: pixels}) for _ in range(0, n, batch)], n, passes)))
    with serial_decoding():
        rows.append(("predict_proba, PyTorch, decoding one by one (0.1)",
                     best_rate(lambda: model.predict_proba(files), n, passes)))
    for threads in (1, 2):
        with decoding_threads(threads):
            rows.append((f"predict_proba, PyTorch, {threads} decoding thread(s)",
                         best_rate(lambda: model.predict_proba(files), n, passes)))
            rows.append((f"predict_proba, ONNX Runtime, {threads} decoding thread(s)",
                         best_rate(lambda: onnx_model.predict_proba(files), n, passes)))
    return rows


def command_rate(model_file, folder, n, runtime, passes):
    """``skcovid predict MODEL FOLDER`` in this process (after the one export, for ONNX), slices per second."""
    def run():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert skcovid_command(["predict", model_file, folder, "-q", "--runtime", runtime]) == 0
    run()  # the ONNX export, once
    return best_rate(run, n, passes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dicom-dir", default=os.environ.get("SKCOVID_COVID_CT_MD_DIR", ROOT / "covid-ct-md-sample"))
    parser.add_argument("--png-dir", default=None)
    parser.add_argument("--n-png", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE)
    args = parser.parse_args()
    X, y, groups = load_dicom_folder(args.dicom_dir)
    png, png_y = real_slices(args.n_png, data_dir=args.png_dir)
    model = recipe(args.recipe, max_epochs=1, head_epochs=0, calibration=None, validation_fraction=None,
                   early_stopping=None, random_state=0).fit(png[:32], png_y[:32])
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SKCOVID_CACHE"] = os.path.join(tmp, "cache")
        model_file = str(save_model(model, os.path.join(tmp, "model.skcovid")))
        onnx_model = load_onnx(export(model, os.path.join(tmp, "model.onnx")))
        check = load_model(model_file, runtime="onnx").predict_proba(X)
        diff = float(np.abs(check - model.predict_proba(X)).max())
        png_folder = Path(tmp, "png", "slices")
        png_folder.mkdir(parents=True)
        for i, path in enumerate(png):
            os.symlink(path, png_folder / f"{i:04d}{Path(path).suffix}")
        print(f"machine: {machine()}; decoding threads of the inference path: {decode_threads()}")
        print(f"model: recipe({args.recipe!r}), {model.backbone}, {model.image_size} px, crop={model.crop}, "
              f"tta={model.tta}, batch_size {model.batch_size}; ONNX vs PyTorch: max |difference| {diff:.2e}")
        for syntax, (label, plugins) in decoders(X).items():
            print(f"DICOM {label} ({syntax}): pydicom's decoders, in the order it tries them: {plugins}")
        for name, files, reader, folder in (
                ("dicom", X, read_hu, args.dicom_dir), ("png", png, read_gray, str(png_folder.parent))):
            rows = stages(name, files, reader, model, onnx_model, args.passes)
            rows += [(f"skcovid predict --runtime {runtime}",
                      command_rate(model_file, folder, len(files), runtime, args.passes))
                     for runtime in ("auto", "torch", "onnx")]
            decode = rows[1][1]
            print(f"\n{name}: {len(files)} slices" + (f" of {len(np.unique(groups))} patients" if name == "dicom"
                                                      else ""))
            print("| stage | slices/s | time / decoding alone (threads) |")
            print("|---|---|---|")
            for stage, rate in rows:
                print(f"| {stage} | {rate:.1f} | {decode / rate:.2f}x |")
            torch_limit = min(rows[1][1], rows[2][1], rows[4][1])
            onnx_limit = min(rows[1][1], rows[5][1])
            serial = 1 / (1 / rows[0][1] + 1 / rows[2][1] + 1 / rows[5][1])
            print(f"decoding, preprocessing and the ONNX network one after the other: {serial:.1f} slices/s")
            print(f"limit of the stages (slowest of decoding in threads, preprocessing, network): "
                  f"PyTorch {torch_limit:.1f}, ONNX Runtime {onnx_limit:.1f} slices/s (stages share the cores, "
                  "so the real limit is lower)")


if __name__ == "__main__":
    main()
