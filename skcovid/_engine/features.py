"""Frozen-backbone features: computed once per fit, and cached across fits with joblib.Memory."""

import hashlib
from collections import OrderedDict

import numpy as np
import torch

from skcovid._core.files import file_sha256
from skcovid._engine.data import PathImages, inference_loader
from skcovid._engine.fingerprint import fingerprint
from skcovid._engine.net import autocast
from skcovid._imaging.medical import source_file
from skcovid._nets.network import eval_mode


def backbone_features(module, images, image_size, *, indices=None, batch_size=32, device="cpu",
                      precision="fp32", num_workers=0):
    """Pooled backbone outputs, what the head of a ``TransferNet`` takes as input.

    Runs in eval mode without gradients and leaves the global torch RNG alone.

    Returns
    -------
    features : Tensor of shape (n_images, n_features), float32, on the CPU
    """
    loader = inference_loader(images, image_size, batch_size, indices=indices,
                              num_workers=num_workers)
    # One output tensor, filled batch by batch: a small tensor kept from every
    # batch, among the large activations the next batch frees and allocates
    # again, splits the freed heap so that glibc cannot reuse it, and peak RSS
    # grew with the number of images (docs/benchmarks.md, peak memory).
    features = None
    start = 0
    # no_grad, not inference_mode: the head trains on these tensors.
    with eval_mode(module), torch.no_grad(), autocast(device, precision):
        for x, _ in loader:
            h = module.features(module.input(x.to(device, non_blocking=True)))
            if h.ndim == 4:
                h = module.pool(h)
            h = h.flatten(1)
            if features is None:
                features = torch.empty(len(loader.dataset), h.shape[1], dtype=torch.float32)
            features[start:start + len(h)] = h
            start += len(h)
    return torch.empty(0, 0) if features is None else features


def _image_digest(images, index):
    """SHA-256 of an image's content: its file's bytes, or its array's."""
    if isinstance(images, PathImages):
        path, slice_index = source_file(images.paths[index])
        # A NIfTI volume's slices share one file: the slice index is part of the content.
        return file_sha256(path, b"" if slice_index is None else f"#{slice_index}".encode()).hexdigest()
    array = np.ascontiguousarray(images[index])
    digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


#: The parameters of a TransferCNNClassifier that the backbone's features depend on.
FEATURE_PARAMS = ("backbone", "weights", "image_size", "window", "crop", "intensity", "pooling", "precision")


def feature_key(params):
    """What the features depend on, as one key: the :data:`FEATURE_PARAMS` of ``params``."""
    return fingerprint({name: params[name] for name in FEATURE_PARAMS})


class _RecentFeatures:
    """Features read from or written to a joblib store in this process, up to ``max_bytes``.

    A lookup in the joblib store costs milliseconds (a file per entry), which
    across the folds and candidates of a search adds up to more than the
    backbone itself; entries used again come from memory. Least recently
    used entries go first.
    """

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.n_bytes = 0
        self.entries = OrderedDict()

    def get(self, key):
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key, value):
        if key in self.entries:
            return
        self.entries[key] = value
        self.n_bytes += value.nbytes
        while self.n_bytes > self.max_bytes and self.entries:
            _, old = self.entries.popitem(last=False)
            self.n_bytes -= old.nbytes


_RECENT = _RecentFeatures(max_bytes=256 * 2**20)


def _stored_feature(model_key, image_digest, feature):
    """Cached by joblib.Memory under (model_key, image_digest); returns what it was given."""
    return feature


def cached_backbone_features(memory, key, module, images, image_size, **kwargs):
    """:func:`backbone_features` through a joblib.Memory store, one entry per image content.

    Only images whose (model, content) pair is not stored yet go through the
    backbone, in batches; so cross-validation folds and grid-search candidates
    that share images compute each image's features once.
    """
    store = memory.cache(_stored_feature, ignore=["feature"])
    digests = [_image_digest(images, i) for i in range(len(images))]
    found = {}
    for i, digest in enumerate(digests):
        name = (str(memory.location), key, digest)
        feature = _RECENT.get(name)
        if feature is None and store.check_call_in_cache(key, digest, None):
            feature = store(key, digest, None)
            _RECENT.put(name, feature)
        if feature is not None:
            found[i] = feature
    missing = [i for i in range(len(digests)) if i not in found]
    if missing:
        computed = backbone_features(module, images, image_size, indices=np.asarray(missing),
                                     **kwargs)
        for i, feature in zip(missing, computed.numpy()):
            store(key, digests[i], feature)
            _RECENT.put((str(memory.location), key, digests[i]), feature)
            found[i] = feature
    return torch.from_numpy(np.stack([found[i] for i in range(len(digests))]))


class FeatureCache:
    """One backbone's features in a joblib.Memory store (see :func:`cached_backbone_features`).

    Parameters
    ----------
    memory : joblib.Memory
        A store with a location.
    key : str
        What the features depend on (:func:`feature_key`).
    """

    def __init__(self, memory, key):
        self.memory = memory
        self.key = key

    def __call__(self, module, images, image_size, **kwargs):
        """The features of ``images``: looked up, or computed and stored."""
        return cached_backbone_features(self.memory, self.key, module, images, image_size,
                                        **kwargs)
