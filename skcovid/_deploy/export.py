"""Export a fitted network, with its preprocessing, to run without skcovid."""

import copy
import itertools
import json
import numbers
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from skcovid._core.estimator import fitted_network
from skcovid._core.files import atomic_write, jsonable
from skcovid._decision.fit import temperature_of
from skcovid._decision.patients import aggregation_of
from skcovid._deploy.int8 import quantize as quantize_onnx
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


def _metadata(classifier, image_size, fmt):
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
        "crop": classifier.crop,
        "intensity": classifier.intensity,
        "input_units": _input_units(window),
        "input": f"float32 tensor (N, 1, H, W): {read}; any H, W (resized inside)",
        "output": "float32 tensor (N, n_classes): class probabilities, columns in 'classes' order",
        "patient_aggregation": aggregation_of(classifier),
        "tta": classifier.tta,  # applied inside the network
        # Applied inside the network (temperature) and by load_onnx's predict (threshold).
        "temperature": getattr(classifier, "temperature_", 1.0),
        "temperature_fitted": temperature_of(classifier) is not None,
        "threshold": getattr(classifier, "threshold_", None),
        "pos_label": jsonable(getattr(classifier, "pos_label_", None)),
        "format": fmt,
        "quantization": None,  # the INT8 export's record, set after quantising
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


def export(estimator, path, *, format=None, quantize=None, calibration=None, validation=None, tolerance=None,
           equalize=False, opset_version=18):
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
    validation : (X_val, y_val) or None, default=None
        With ``quantize="int8"``: labelled slices (in any form ``calibration``
        takes) on which both the float32 and the quantised model are scored
        (accuracy with the classifier's decision, and ROC-AUC); the figures
        are stored in the file's metadata. Use slices the model was not
        trained on, and not your test slices.
    tolerance : float in [0, 1] or None, default=None
        With ``validation``: accuracy-aware mixed precision. While the
        quantised model loses more than ``tolerance`` of accuracy or of
        ROC-AUC against the float32 model on ``validation``, the nodes whose
        quantisation adds the most noise to the network's activations on the
        calibration slices (ONNX Runtime's ``qdq_loss_debug``) return to
        float32 (``nodes_to_exclude``): the fewest that hold the tolerance,
        found by doubling their number and then bisecting. When none does,
        the file is the float32 model. The metadata lists the nodes the
        loop excluded (``excluded_nodes``) and all that run in float32 in
        the file (``float_nodes``: ONNX Runtime also leaves float the
        weights of some nodes next to excluded ones). None quantises every
        node. Without ``validation`` no label is needed: the same search
        holds the quantised model to the float32 one on (up to 128 of) the
        calibration slices, at most ``tolerance`` of their decisions changed
        and ``tolerance`` of mean probability change (None: 0.01, at least
        99% of the same labels), recorded as ``agreement`` in the metadata.
    equalize : bool, default=False
        With ``quantize="int8"``: cross-layer equalisation (Nagel et al.,
        2019) of the float graph before quantisation: each pair of
        convolutions joined by a ReLU gets equal per-channel weight ranges
        (the float function is kept). Pairs joined by ReLU6, as in
        EfficientNet-Lite, are left alone: a clip at 6 does not commute with
        the scaling. The metadata records the number of pairs equalised.
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
    for name, value, unset in (("validation", validation, None), ("tolerance", tolerance, None),
                               ("equalize", equalize, False)):
        if value is not unset and quantize is None:
            raise ValueError(f"{name}= applies to quantize='int8' only; got quantize=None.")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real)
                                  or not 0 <= tolerance <= 1):
        raise ValueError(f"tolerance={tolerance!r} is not valid: a number in [0, 1] (what the quantised model "
                         "may lose), or None.")
    if not isinstance(equalize, bool):
        raise ValueError(f"equalize={equalize!r} is not valid: True or False.")
    classifier, model = deployable_net(estimator)
    network, image_size = model.network, model.image_size
    int8 = None
    if quantize is not None:
        units = _input_units(classifier.window)
        inputs = list(itertools.islice(model_inputs(calibration, classifier.window, units,
                                                    classifier.crop, classifier.intensity), MAX_CALIBRATION))
        if not inputs:
            raise ValueError("calibration holds no images.")
        int8 = {"calibration": inputs, "equalize": equalize,
                "tolerance": None if tolerance is None else float(tolerance),
                "decision": {"classes": classifier.classes_, "threshold": getattr(classifier, "threshold_", None),
                             "pos_label": getattr(classifier, "pos_label_", None)}}
        if validation is not None:
            int8["validation"] = _validation(validation, classifier, units)
    device = next(network.parameters()).device
    if format != "onnx" and device.type != "cpu":
        model = copy.deepcopy(model).cpu()  # a PyTorch file for the point of care: CPU tensors
        device = torch.device("cpu")
    # Any pixels do for tracing; a private generator leaves the global RNG alone.
    example = torch.rand(2, 1, image_size + 7, image_size + 3,
                         generator=torch.Generator().manual_seed(0)).to(device)
    if classifier.window is not None:
        example = example * 2000 - 1000  # HU
    metadata = _metadata(classifier, image_size, format)
    with eval_mode(model), torch.no_grad():
        if format == "torchscript":
            with warnings.catch_warnings(), atomic_write(path, "wb") as f:
                warnings.simplefilter("ignore", FutureWarning)  # said once, by _resolve_format
                traced = torch.jit.trace(model, example, check_trace=False)
                torch.jit.save(traced, f, _extra_files={"skcovid.json": json.dumps(metadata)})
        elif format == "torch.export":
            program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes())
            with atomic_write(path, "wb") as f:
                torch.export.save(program, f, extra_files={"skcovid.json": json.dumps(metadata)})
        else:
            _export_onnx(model, example, path, metadata, opset_version, int8)
    return Path(path)


def _dynamic_shapes():
    batch, height, width = (torch.export.Dim(name, min=1) for name in ("batch", "height", "width"))
    return {"x": {0: batch, 2: height, 3: width}}


def _validation(validation, classifier, units):
    """``(X_val, y_val)`` as the network's inputs and labels, checked against the classifier's classes."""
    try:
        X_val, y_val = validation
    except (TypeError, ValueError):
        raise ValueError("validation must be a pair (X_val, y_val) of labelled slices.") from None
    images = list(model_inputs(X_val, classifier.window, units, classifier.crop, classifier.intensity))
    labels = np.asarray(y_val, dtype=object)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"validation holds {len(images)} images but {labels.size} labels.")
    classes = list(classifier.classes_)
    unknown = sorted({str(label) for label in labels if label not in classes})
    if unknown:
        raise ValueError(f"validation has labels {unknown} the classifier does not know; its classes are "
                         f"{[str(c) for c in classes]}.")
    missing = [str(c) for c in classes if not np.any(labels == c)]
    if missing:
        raise ValueError(f"validation has no slice of class {missing}: its ROC-AUC needs every class.")
    return images, labels


def _export_onnx(model, example, path, metadata, opset_version, int8):
    import onnx  # heavy: loaded by ONNX exports only
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, (example,), raw, input_names=["image"], output_names=["proba"],
                          opset_version=opset_version, dynamo=True, dynamic_shapes=_dynamic_shapes(),
                          verbose=False)
        if int8 is not None:
            raw, metadata["quantization"] = quantize_onnx(raw, tmp, **int8)
        proto = onnx.load(raw)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    with atomic_write(path, "wb") as f:
        f.write(proto.SerializeToString())
