"""Run a model exported to ONNX with ONNX Runtime, without PyTorch.

Everything here imports numpy, Pillow, skcovid's readers and onnxruntime
only, so a point-of-care script that loads an exported file never imports
torch, torchvision, skorch or scikit-learn.
"""

import json
import os

import numpy as np

from skcovid._core.parallel import ordered_map
from skcovid._decision.decide import AGGREGATIONS, check_finite_proba, decide
from skcovid._deploy.limits import check_classes, check_decision, check_image_size
from skcovid._imaging.crop import CROPS, crop_image
from skcovid._imaging.intensity import INTENSITIES, harmonise
from skcovid._imaging.medical import read_hu
from skcovid._imaging.raster import array_to_gray, as_paths
from skcovid._imaging.window import check_hu_source, is_window, read_windowed

#: The ONNX metadata key under which :func:`skcovid.export` stores its JSON.
METADATA_KEY = "skcovid"


def _as_window(window):
    """A window from the file's JSON (lists come back as tuples)."""
    return tuple(window) if isinstance(window, list) else window


def model_input(item, window, input_units, crop=None, intensity=None):
    """One slice as an exported network takes it: ``(H, W)`` float32.

    Parameters
    ----------
    item : str or os.PathLike
        An image file, a DICOM file or a NIfTI slice (``"vol.nii.gz#k"``).
    window : {"lung", "mediastinal", "multi"}, (level, width) or None
        The classifier's ``window``.
    input_units : {"gray", "HU"}
        What the exported network takes: grey intensities in ``[0, 1]`` (a
        classifier without a window: HU slices go through the lung window, as
        skcovid reads them) or Hounsfield units (windowed inside the network).
    crop : {"body", "lungs"} or None, default=None
        The classifier's ``crop``, applied here, before the network
        (:func:`skcovid._imaging.crop.crop_image`).
    intensity : {"auto"} or None, default=None
        The classifier's ``intensity``, applied here to raster slices
        (:func:`skcovid._imaging.intensity.harmonise`).

    Returns
    -------
    image : ndarray of shape (H, W), dtype float32
    """
    if input_units == "gray":
        return read_windowed(item, None, crop, intensity)[0]
    check_hu_source(item, window)  # a raster file's grey levels are not HU
    return crop_image(read_hu(item), crop, hu=True)


def model_inputs(X, window, input_units, crop=None, intensity=None):
    """Each image of ``X`` as :func:`model_input` gives it, one at a time.

    Paths are read with skcovid's readers (a few ahead, in threads:
    :func:`skcovid._core.parallel.ordered_map`); arrays, ``(n, H, W)`` or a list of
    ``(H, W)``, are taken in the network's input units (grey intensities:
    ``uint8`` and ``uint16`` scaled to ``[0, 1]`` as :func:`skcovid.datasets`
    reads arrays; HU: as given), each harmonised (grey intensities) and cut
    down as ``intensity`` and ``crop`` say.
    """
    paths = as_paths(X)
    if paths is not None:
        # Decoded a few files ahead in threads, in order, while the network runs.
        yield from ordered_map(lambda path: model_input(path, window, input_units, crop, intensity), paths)
        return
    for image in X:
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"Expected images of shape (H, W); got one of shape {image.shape}.")
        if input_units == "gray":
            yield crop_image(harmonise(array_to_gray(image[None])[0], intensity), crop, hu=False)
        else:
            yield crop_image(image.astype(np.float32), crop, hu=True)


class OnnxClassifier:
    """A classifier exported by :func:`skcovid.export` to ONNX, run by ONNX Runtime.

    Made by :func:`skcovid.load_onnx`. It predicts like the fitted classifier
    it was exported from, on image paths (PNG, JPEG, DICOM, NIfTI slices) or
    arrays, and imports no PyTorch.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        The loaded file.
    metadata : dict
        The file's ``skcovid`` metadata.
    path : str
        Where the file was read from.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    image_size : int
        The network's input size (slices are resized inside the network).
    window : str, tuple or None
        The classifier's ``window``.
    crop : {"body", "lungs"} or None
        The classifier's ``crop`` (applied before the network, by this runtime).
    intensity : {"auto"} or None
        The classifier's ``intensity`` (applied to raster slices before the network, by this runtime).
    input_units : {"gray", "HU"}
        What arrays given to :meth:`predict_proba` must hold.
    temperature_ : float
        The temperature applied inside the network (1.0: none).
    temperature_fitted_ : bool
        Whether the classifier had fitted it (:func:`skcovid.load_model`'s
        reports say so).
    threshold_, pos_label_ : float or None, label or None
        The classifier's decision threshold on P(``pos_label_``) (see
        ``target_sensitivity``); None: the most probable class.
    patient_aggregation, patient_top_k, patient_threshold
        The classifier's patient aggregation (``skcovid predict`` uses them).
    """

    def __init__(self, session, metadata, path):
        self.session = session
        self.metadata = metadata
        self.path = path
        classes = metadata["classes"]
        self.classes_ = np.asarray(classes, dtype=object if any(isinstance(c, str) for c in classes) else None)
        self.image_size = metadata["image_size"]
        self.window = _as_window(metadata["window"])
        self.input_units = metadata["input_units"]
        self.crop = metadata.get("crop")
        self.intensity = metadata.get("intensity")
        self.temperature_ = float(metadata.get("temperature") or 1.0)
        # Files exported before "temperature_fitted" had a temperature fitted where it is not 1.
        self.temperature_fitted_ = metadata.get("temperature_fitted", self.temperature_ != 1.0) is True
        self.threshold_ = metadata.get("threshold")
        self.pos_label_ = metadata.get("pos_label")
        aggregation = metadata.get("patient_aggregation", {})
        self.patient_aggregation = aggregation.get("method", "mean")
        self.patient_top_k = aggregation.get("top_k", 5)
        self.patient_threshold = aggregation.get("threshold", 0.5)
        self._input_name = session.get_inputs()[0].name

    def __repr__(self):
        quantization = self.metadata.get("quantization") or {}
        kind = quantization.get("dtype", "float32")
        return f"OnnxClassifier({self.path!r}, classes={self.classes_.tolist()}, {kind})"

    def predict_proba(self, X, batch_size=16):
        """Class probabilities, columns in ``classes_`` order.

        Parameters
        ----------
        X : sequence of paths, ndarray of shape (n, H, W) or list of (H, W) arrays
            Paths are read as skcovid reads them; arrays must be in
            ``input_units``.
        batch_size : int, default=16
            Consecutive images of one size run together, this many at most.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float32
        """
        out, batch = [], []

        def run():
            if batch:
                stacked = np.stack(batch)[:, None]
                out.append(self.session.run(None, {self._input_name: stacked})[0])
                batch.clear()

        for image in model_inputs(X, self.window, self.input_units, self.crop, self.intensity):
            if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
                run()
            batch.append(image)
        run()
        if not out:
            return np.empty((0, len(self.classes_)), dtype=np.float32)
        return check_finite_proba(np.concatenate(out), repr(self.path))

    def predict(self, X):
        """The class of each image: the most probable, or as ``threshold_`` decides.

        Parameters
        ----------
        X : sequence of paths, ndarray of shape (n, H, W) or list of (H, W) arrays

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        return decide(self.predict_proba(X), self.classes_, self.threshold_, self.pos_label_)


def load_onnx(path, *, n_threads=None, providers=None):
    """Load a model that :func:`skcovid.export` wrote in the ONNX format.

    The returned object predicts with ONNX Runtime, importing no PyTorch (a
    point-of-care device needs skcovid's readers and ``onnxruntime`` only, for
    fp32 and INT8 files alike). An ONNX file holds a graph and its weights,
    never code: loading one runs nothing from it.

    Parameters
    ----------
    path : str or path-like
    n_threads : int or None, default=None
        ONNX Runtime's intra-op threads; None lets it choose.
    providers : list of str or None, default=None
        ONNX Runtime execution providers; None means ``["CPUExecutionProvider"]``.

    Returns
    -------
    model : OnnxClassifier
        With ``predict``, ``predict_proba`` and ``classes_``.

    Raises
    ------
    ValueError
        If the file is not an ONNX model that skcovid exported.

    Examples
    --------
    >>> from skcovid import load_onnx
    >>> model = load_onnx("model.onnx")                          # doctest: +SKIP
    >>> model.predict(["slice_001.dcm", "slice_002.dcm"])        # doctest: +SKIP
    """
    try:
        import onnxruntime  # heavy, and all a point-of-care install of skcovid without its dependencies adds
    except ImportError as exc:
        raise ImportError("load_onnx needs ONNX Runtime: pip install onnxruntime.") from exc
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model file not found: {path!r}")
    options = onnxruntime.SessionOptions()
    if n_threads is not None:
        options.intra_op_num_threads = n_threads
    try:
        session = onnxruntime.InferenceSession(path, options,
                                               providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types
        raise ValueError(f"{path!r} is not an ONNX model ONNX Runtime can load: {exc}") from exc
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise ValueError(f"{path!r} is an ONNX model but not one skcovid exported (it has no "
                         f"'{METADATA_KEY}' metadata naming its classes and input).")
    return OnnxClassifier(session, _checked_metadata(text, session, path), path)


def _checked_metadata(text, session, path):
    """The file's ``skcovid`` metadata, refused with the field named unless a prediction can trust it."""
    try:
        metadata = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path!r}: its '{METADATA_KEY}' metadata is not JSON ({exc}).") from exc
    if not isinstance(metadata, dict):
        raise ValueError(f"{path!r}: its '{METADATA_KEY}' metadata is a {type(metadata).__name__}, not an object.")
    missing = [key for key in ("classes", "image_size", "window", "input_units") if key not in metadata]
    if missing:
        raise ValueError(f"{path!r}: its '{METADATA_KEY}' metadata lacks {missing}.")
    try:
        outputs = session.get_outputs()[0].shape
        n_outputs = outputs[-1] if outputs and isinstance(outputs[-1], int) else None
        check_classes(metadata["classes"], n_outputs, "classes")
        check_image_size(metadata["image_size"], "image_size")
        window = _as_window(metadata["window"])
        if not is_window(window):
            raise ValueError(f"window is {metadata['window']!r}: not a window skcovid knows")
        units = metadata["input_units"]
        if units not in ("gray", "HU") or (units == "HU") != (window is not None):
            raise ValueError(f"input_units is {units!r} for window {metadata['window']!r}: a model with a window "
                             "takes 'HU', one without takes 'gray'")
        if metadata.get("crop") not in (None, *CROPS):
            raise ValueError(f"crop is {metadata['crop']!r}: not one of {[None, *CROPS]}")
        if metadata.get("intensity") not in (None, *INTENSITIES):
            raise ValueError(f"intensity is {metadata['intensity']!r}: not one of {[None, *INTENSITIES]}")
        check_decision(metadata["classes"], temperature=metadata.get("temperature"),
                       threshold=metadata.get("threshold"), pos_label=metadata.get("pos_label"), where="")
        aggregation = metadata.get("patient_aggregation", {})
        if not isinstance(aggregation, dict) or aggregation.get("method", "mean") not in AGGREGATIONS:
            raise ValueError(f"patient_aggregation is {aggregation!r}: the method must be one of {AGGREGATIONS}")
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path!r}: its '{METADATA_KEY}' metadata is malformed "
                         f"({type(exc).__name__}: {exc}).") from exc
    except ValueError as exc:
        raise ValueError(f"{path!r}: its '{METADATA_KEY}' metadata is refused: {exc}.") from exc
    return metadata
