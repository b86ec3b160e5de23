"""What a model file may declare: the bounds and checks its loaders apply before anything is allocated or used.

Both loaders use them: the safe format's (``skcovid.load_model``) and the ONNX
metadata's (``skcovid.load_onnx``). numpy only, so the ONNX runtime can.
A file that breaks one is refused with an error naming the field.
"""

import numbers

import numpy as np

from skcovid._core.checks import is_count

#: The largest ``image_size`` a file may declare (a 4096 x 4096 slice is 64 MiB as float32).
MAX_IMAGE_SIZE = 4096
#: The most hidden units a file's head may declare, all layers together.
MAX_HEAD_UNITS = 16384
#: The most classes a file may declare.
MAX_CLASSES = 1000
#: The largest ``batch_size`` a file may declare.
MAX_BATCH_SIZE = 4096
#: The most items an array in a file's JSON may declare, and the largest item (bytes).
MAX_ARRAY_ITEMS = 10_000_000
MAX_ITEM_BYTES = 4096


def check_image_size(value, where):
    """Refuse an image size that is not an int in ``[1, MAX_IMAGE_SIZE]``."""
    if not is_count(value, 1, MAX_IMAGE_SIZE):
        raise ValueError(f"{where} is {value!r}: expected a whole number from 1 to {MAX_IMAGE_SIZE}")


def check_classes(classes, n_outputs, where):
    """Refuse classes that are not 2 to :data:`MAX_CLASSES` distinct labels, one per network output."""
    classes = np.asarray(classes)
    if classes.ndim != 1 or not 2 <= len(classes) <= MAX_CLASSES:
        raise ValueError(f"{where} must list 2 to {MAX_CLASSES} classes; got {classes.tolist()!r}")
    if len({str(c) for c in classes.tolist()}) != len(classes):
        raise ValueError(f"{where} has duplicates: {classes.tolist()!r}")
    if n_outputs is not None and n_outputs != len(classes):
        raise ValueError(f"{where} lists {len(classes)} classes but the network has {n_outputs} outputs")


def _finite(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def check_decision(classes, *, temperature, threshold, pos_label, where):
    """Refuse a temperature that is not finite and > 0, a threshold outside [0, 1], a positive label not a class."""
    if temperature is not None and not (_finite(temperature) and temperature > 0):
        raise ValueError(f"{where}temperature is {temperature!r}: expected a finite number > 0")
    if threshold is not None:
        if not (_finite(threshold) and 0 <= threshold <= 1):
            raise ValueError(f"{where}threshold is {threshold!r}: expected a finite number from 0 to 1")
        if pos_label is None or str(pos_label) not in {str(c) for c in np.asarray(classes).tolist()}:
            raise ValueError(f"{where}pos_label is {pos_label!r}: a threshold needs the positive class, one of "
                             f"{np.asarray(classes).tolist()!r}")


def check_array_spec(dtype, shape, n_items, where):
    """Refuse a stored array whose declared dtype, shape and items do not agree or pass the bounds."""
    if dtype.itemsize > MAX_ITEM_BYTES:
        raise ValueError(f"{where}: array items of {dtype.itemsize} bytes ({dtype}), more than {MAX_ITEM_BYTES}")
    if not isinstance(shape, list) or not all(is_count(n, 0) for n in shape):
        raise ValueError(f"{where}: array shape {shape!r} is not a list of whole numbers")
    size = int(np.prod(shape, dtype=np.float64))
    if size > MAX_ARRAY_ITEMS or size != n_items:
        raise ValueError(f"{where}: array of shape {shape} holds {n_items} items")


def check_architecture(arch, dense, packed):
    """Refuse an architecture whose sizes are out of bounds or whose head the file's tensors do not hold.

    ``dense`` maps names to the file's tensors, ``packed`` to the sparse ones (``shape``, ``bits``,
    ``values``); only their sizes are read, before the network is built.
    """
    check_image_size(arch.get("image_size"), "network.module.image_size")
    widths = arch.get("hidden_units")
    n_features, n_classes = arch.get("n_features"), arch.get("n_classes")
    if (not is_count(n_features) or not is_count(n_classes, 2, MAX_CLASSES) or not isinstance(widths, list)
            or not all(is_count(w) for w in widths) or sum(widths) > MAX_HEAD_UNITS):
        raise ValueError(f"network.module declares a head of {n_features!r} features, hidden units {widths!r} and "
                         f"{n_classes!r} classes: out of bounds")
    sizes = [n_features, *widths, n_classes]
    expected = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    stored = sum(t.numel() for name, t in dense.items() if name.startswith("head."))
    stored += sum(int(np.prod(p["shape"], dtype=np.float64)) for name, p in packed.items() if name.startswith("head."))
    if stored != expected:
        raise ValueError(f"network.module declares a head of {expected:,} parameters; the file holds {stored:,}")
    for name, p in packed.items():
        shape = p["shape"]
        if not isinstance(shape, list) or not all(is_count(n, 0) for n in shape):
            raise ValueError(f"network.module.sparse.{name} has shape {shape!r}")
        n = int(np.prod(shape, dtype=np.float64))
        if p["bits"].numel() != (n + 7) // 8 or p["values"].numel() > n or not p["values"].is_floating_point():
            raise ValueError(f"network.module.sparse.{name}: {n:,} entries, but {p['bits'].numel():,} bytes of "
                             f"mask and {p['values'].numel():,} {p['values'].dtype} values")
