"""Export a fitted network, with its preprocessing, to run without skcovid."""

import copy
import itertools
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from skcovid._core.estimator import fitted_network
from skcovid._core.files import atomic_write, jsonable
from skcovid._decision.patients import aggregation_of
from skcovid._deploy.onnx_runtime import METADATA_KEY, model_inputs
from skcovid._imaging.window import window_bounds
from skcovid._nets.network import ViewAverage, eval_mode
from skcovid._version import __version__

#: Export formats; ``format=None`` picks one from the file name (:data:`SUFFIXES`).
FORMATS = ("torch.export", "onnx", "torchscript")
SUFFIXES = {".onnx": "onnx", ".pt2": "torch.export", ".pt": "torchscript", ".ts": "torchscript"}
#: Calibration slices beyond this many add time, not accuracy, to INT8 quantisation.
MAX_CALIBRATION = 256


class HUWindow(nn.Module):
    """:func:`skcovid._imaging.window.apply_window` on HU batches ``(N, 1, H, W)``, inside exported models."""

    def __init__(self, window):
        super().__init__()
        low, high = torch.tensor(window_bounds(window), dtype=torch.float32).T
        self.register_buffer("low", low.view(1, -1, 1, 1))
        self.register_buffer("high", high.view(1, -1, 1, 1))

    def forward(self, x):
        return ((x - self.low) / (self.high - self.low)).clamp(0.0, 1.0)


class DeployableNet(nn.Module):
    """Slices of any size in, class probabilities out.

    Takes ``(N, 1, H, W)`` float tensors: Hounsfield units when the classifier
    has a ``window`` (windowed inside, before resizing, as skcovid does),
    else grey intensities in ``[0, 1]`` (a CT slice read as grayscale and
    divided by 255). Resizes them to the network's input size exactly as
    skcovid does (bilinear, antialiased), repeats and normalises the channel
    inside the network, and returns softmax probabilities whose columns follow
    ``classes_``.
    """

    def __init__(self, network, image_size, window=None, temperature=1.0):
        super().__init__()
        self.window = nn.Identity() if window is None else HUWindow(window)
        self.network = network
        self.image_size = image_size
        self.temperature = float(temperature)

    def forward(self, x):
        x = self.window(x)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        logits = self.network(x)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


def deployable_net(estimator):
    """The fitted classifier inside ``estimator`` and its network as :func:`export` writes it.

    Returns
    -------
    classifier : TransferCNNClassifier
    model : DeployableNet
        Shares the fitted network's parameters; applies the classifier's
        window, test-time augmentation (``tta``) and ``temperature_``.
    """
    classifier, network, image_size = fitted_network(estimator)
    if classifier.tta is not None:
        network = ViewAverage(network, classifier.tta)
    return classifier, DeployableNet(network, image_size, classifier.window,
                                     getattr(classifier, "temperature_", 1.0))


def _input_units(window):
    """What an exported network takes: HU when the classifier has a window (applied inside), else grey."""
    return "HU" if window is not None else "gray"


def _metadata(classifier, image_size, fmt, quantization):
    window = classifier.window
    if window is None:
        read = ("the slice in grayscale, scaled to [0, 1] (HU slices through the lung window, "
                f"{window_bounds(None)[0]} HU to [0, 1], as skcovid reads them)")
    else:
        read = f"the slice in Hounsfield units (windowed inside: {window_bounds(window)} HU per channel)"
    return {
        "classes": [jsonable(c) for c in classifier.classes_],
        "image_size": image_size,
        "window": list(window) if isinstance(window, (tuple, list)) else window,
        "input_units": _input_units(window),
        "input": f"float32 tensor (N, 1, H, W): {read}; any H, W (resized inside)",
        "output": "float32 tensor (N, n_classes): class probabilities, columns in 'classes' order",
        "patient_aggregation": aggregation_of(classifier),
        "tta": classifier.tta,  # applied inside the network
        # Applied inside the network (temperature) and by load_onnx's predict (threshold).
        "temperature": getattr(classifier, "temperature_", 1.0),
        "threshold": getattr(classifier, "threshold_", None),
        "pos_label": jsonable(getattr(classifier, "pos_label_", None)),
        "format": fmt,
        "quantization": quantization,
        "skcovid_version": __version__,
    }


def _resolve_format(format, path):
    if format is None:
        format = SUFFIXES.get(Path(path).suffix.lower(), "torch.export")
    elif format not in FORMATS:
        raise ValueError(f"format={format!r} is not valid; choose one of {list(FORMATS)}.")
    if format == "torchscript":
        warnings.warn(
            "TorchScript is deprecated in PyTorch; export with format='torch.export' (a .pt2 file for "
            "torch.export.load) or format='onnx' (ONNX Runtime, INT8) instead.", FutureWarning, stacklevel=3)
    return format


def export(estimator, path, *, format=None, quantize=None, calibration=None, opset_version=18):
    """Write a fitted classifier's network, with its preprocessing, for deployment.

    The file runs without skcovid, pruned or not: with PyTorch alone
    (``torch.export.load``), or with any ONNX runtime (:func:`skcovid.load_onnx`
    runs one with ONNX Runtime and no PyTorch). Input: ``(N, 1, H, W)``
    float32 grayscale intensities in ``[0, 1]`` or, for a classifier with a
    ``window``, Hounsfield units (the window is applied inside the exported
    network, before resizing), any ``N``, ``H`` and ``W``; output: class
    probabilities, the same as ``estimator.predict_proba`` gives for those
    pixels. The classes, input size, window, patient aggregation and
    conventions are stored in the file (extra file ``skcovid.json`` in
    ``.pt2`` and TorchScript archives, metadata ``skcovid`` in ONNX). The
    write is atomic.

    Parameters
    ----------
    estimator : fitted TransferCNNClassifier or PrunedCNNClassifier
        Or a Pipeline or fitted search ending in one.
    path : str or path-like
    format : {"torch.export", "onnx", "torchscript"} or None, default=None
        None picks it from the file name: ``.onnx`` ONNX, ``.pt`` and ``.ts``
        TorchScript, anything else (``.pt2``) ``torch.export``, PyTorch's
        recommended format. TorchScript is deprecated in PyTorch (a
        ``FutureWarning`` says so) and kept for runtimes that still load it.
        ONNX needs the ``onnx`` extra (``pip install "skcovid[onnx]"``).
    quantize : {"int8"} or None, default=None
        ``"int8"`` (ONNX only) quantises weights and activations to 8 bits
        with ONNX Runtime's static quantisation: QDQ format, per-channel
        symmetric int8 weights with 7-bit range (``reduce_range``, exact on
        CPUs without VNNI instructions, where full-range int8 products
        saturate), uint8 activations with min-max ranges measured on
        ``calibration``. The preprocessing before the first convolution and
        the final softmax stay in float32. The file is about a quarter of the
        float32 one.
    calibration : array-like or None, default=None
        With ``quantize="int8"``: slices like those the model will see, in any
        form the classifier's ``predict`` accepts (paths are read with
        skcovid's readers; arrays hold the model's input units). Use training
        images, some of each class; at most the first 256 are used.
    opset_version : int, default=18
        ONNX opset (18 is the first with antialiased resizing).

    Returns
    -------
    path : pathlib.Path

    See Also
    --------
    load_onnx : Run an exported ONNX file with ONNX Runtime, without PyTorch.
    save_model : Save the whole estimator (to train further or evaluate).
    """
    format = _resolve_format(format, path)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize={quantize!r} is not valid; choose 'int8' or None.")
    if quantize is not None and format != "onnx":
        raise ValueError(f"quantize={quantize!r} needs format='onnx' (ONNX Runtime's static "
                         f"quantisation); got format={format!r}.")
    if quantize is not None and calibration is None:
        raise ValueError("quantize='int8' needs calibration images: pass calibration=X with some "
                         "training slices of each class (32 to 256).")
    classifier, model = deployable_net(estimator)
    network, image_size = model.network, model.image_size
    inputs = None
    if quantize is not None:
        inputs = list(itertools.islice(model_inputs(calibration, classifier.window,
                                                    _input_units(classifier.window)), MAX_CALIBRATION))
        if not inputs:
            raise ValueError("calibration holds no images.")
    quantization = None if quantize is None else {
        "dtype": "int8", "method": "ONNX Runtime static, QDQ, per-channel int8 weights (reduce_range), "
                                   "uint8 activations, min-max calibration",
        "n_calibration_images": len(inputs)}
    device = next(network.parameters()).device
    if format != "onnx" and device.type != "cpu":
        model = copy.deepcopy(model).cpu()  # a PyTorch file for the point of care: CPU tensors
        device = torch.device("cpu")
    # Any pixels do for tracing; a private generator leaves the global RNG alone.
    example = torch.rand(2, 1, image_size + 7, image_size + 3,
                         generator=torch.Generator().manual_seed(0)).to(device)
    if classifier.window is not None:
        example = example * 2000 - 1000  # HU
    metadata = json.dumps(_metadata(classifier, image_size, format, quantization))
    with eval_mode(model), torch.no_grad():
        if format == "torchscript":
            with warnings.catch_warnings(), atomic_write(path, "wb") as f:
                warnings.simplefilter("ignore", FutureWarning)  # said once, by _resolve_format
                traced = torch.jit.trace(model, example, check_trace=False)
                torch.jit.save(traced, f, _extra_files={"skcovid.json": metadata})
        elif format == "torch.export":
            program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes())
            with atomic_write(path, "wb") as f:
                torch.export.save(program, f, extra_files={"skcovid.json": metadata})
        else:
            _export_onnx(model, example, path, metadata, opset_version, inputs)
    return Path(path)


def _dynamic_shapes():
    batch, height, width = (torch.export.Dim(name, min=1) for name in ("batch", "height", "width"))
    return {"x": {0: batch, 2: height, 3: width}}


def _export_onnx(model, example, path, metadata, opset_version, calibration):
    try:
        import onnx  # optional: the onnx extra
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx extra: pip install \"skcovid[onnx]\".") from exc
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, (example,), raw, input_names=["image"], output_names=["proba"],
                          opset_version=opset_version, dynamo=True, dynamic_shapes=_dynamic_shapes(),
                          verbose=False)
        if calibration is not None:
            raw = _quantize_int8(raw, tmp, calibration)
        proto = onnx.load(raw)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    with atomic_write(path, "wb") as f:
        f.write(proto.SerializeToString())


def _quantize_int8(raw, folder, calibration):
    """ONNX Runtime static quantisation of the model file ``raw``; returns the new file's path."""
    import onnx  # optional: the onnx extra
    from onnxruntime.quantization import (  # optional: the onnx extra
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # optional: the onnx extra

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._images = iter(calibration)

        def get_next(self):
            image = next(self._images, None)
            return None if image is None else {"image": image[None, None]}

    prepared, quantized = os.path.join(folder, "prepared.onnx"), os.path.join(folder, "int8.onnx")
    quant_pre_process(raw, prepared)  # shape inference and graph optimisation, as ORT recommends
    nodes = onnx.load(prepared).graph.node
    first_conv = next(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    # Window, resize and normalisation before the first convolution, and the
    # softmax, stay in float32: 8 bits cannot hold HU, nor small probabilities.
    keep_float = [node.name for node in nodes[:first_conv]] + [
        node.name for node in nodes if node.op_type == "Softmax"]
    quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
    return quantized
