"""Export a fitted network, with its preprocessing, to run without skcovid."""

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ._fitted import fitted_network
from ._network import eval_mode
from ._persistence import atomic_write
from ._version import __version__
from ._window import HUWindow, window_bounds

FORMATS = ("torchscript", "onnx")


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

    def __init__(self, network, image_size, window=None):
        super().__init__()
        self.window = nn.Identity() if window is None else HUWindow(window)
        self.network = network
        self.image_size = image_size

    def forward(self, x):
        x = self.window(x)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        return torch.softmax(self.network(x), dim=1)


def _metadata(classifier, image_size, fmt):
    window = classifier.window
    if window is None:
        read = ("the slice in grayscale, scaled to [0, 1] (HU slices through the lung window, "
                f"{window_bounds(None)[0]} HU to [0, 1], as skcovid reads them)")
    else:
        read = f"the slice in Hounsfield units (windowed inside: {window_bounds(window)} HU per channel)"
    return {
        "classes": [c.item() if hasattr(c, "item") else c for c in classifier.classes_],
        "image_size": image_size,
        "window": list(window) if isinstance(window, (tuple, list)) else window,
        "input_units": "HU" if window is not None else "gray",
        "input": f"float32 tensor (N, 1, H, W): {read}; any H, W (resized inside)",
        "output": "float32 tensor (N, n_classes): class probabilities, columns in 'classes' order",
        "format": fmt,
        "skcovid_version": __version__,
    }


def export(estimator, path, *, format="torchscript", opset_version=18):
    """Write a fitted classifier's network, with its preprocessing, for deployment.

    The file runs with PyTorch alone (TorchScript: ``torch.jit.load``) or any
    ONNX runtime (ONNX), pruned or not. Input: ``(N, 1, H, W)`` float32
    grayscale intensities in ``[0, 1]`` or, for a classifier with a
    ``window``, Hounsfield units (the window is applied inside the exported
    network, before resizing), any ``H`` and ``W``; output: class
    probabilities, the same as ``estimator.predict_proba`` gives for those
    pixels. The classes, input size and conventions are stored in the file
    (TorchScript extra file ``skcovid.json``; ONNX metadata ``skcovid``). The
    write is atomic.

    Parameters
    ----------
    estimator : fitted TransferCNNClassifier or PrunedCNNClassifier
        Or a Pipeline or fitted search ending in one.
    path : str or path-like
    format : {"torchscript", "onnx"}, default="torchscript"
        ONNX needs the ``onnx`` extra (``pip install "skcovid[onnx]"``).
    opset_version : int, default=18
        ONNX opset (18 is the first with antialiased resizing).

    Returns
    -------
    path : pathlib.Path
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not valid; choose one of {list(FORMATS)}.")
    classifier, network, image_size = fitted_network(estimator)
    device = next(network.parameters()).device
    model = DeployableNet(network, image_size, classifier.window)
    # Any pixels do for tracing; a private generator leaves the global RNG alone.
    example = torch.rand(2, 1, image_size + 7, image_size + 3,
                         generator=torch.Generator().manual_seed(0)).to(device)
    if classifier.window is not None:
        example = example * 2000 - 1000  # HU
    metadata = json.dumps(_metadata(classifier, image_size, format))
    with eval_mode(model):
        if format == "torchscript":
            with torch.no_grad(), warnings.catch_warnings():
                # TorchScript is deprecated in favour of torch.export but is what
                # C++ and mobile runtimes load; the ONNX format is the alternative.
                warnings.simplefilter("ignore", FutureWarning)
                traced = torch.jit.trace(model, example, check_trace=False)
                with atomic_write(path, "wb") as f:
                    torch.jit.save(traced, f, _extra_files={"skcovid.json": metadata})
        else:
            _export_onnx(model, example, path, metadata, opset_version)
    return Path(path)


def _export_onnx(model, example, path, metadata, opset_version):
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx extra: pip install \"skcovid[onnx]\".") from exc
    batch, height, width = (torch.export.Dim(name, min=1) for name in ("batch", "height", "width"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "model.onnx")
        torch.onnx.export(
            model, (example,), raw, input_names=["image"], output_names=["proba"],
            opset_version=opset_version, dynamo=True,
            dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
        )
        proto = onnx.load(raw)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "skcovid", metadata
    with atomic_write(path, "wb") as f:
        f.write(proto.SerializeToString())
