"""Shared fixtures: small synthetic CT-like images and the real dataset's location."""

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skorch.callbacks import Callback

REAL_DATA = Path(
    os.environ.get("SKCOVID_SARSCOV2_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "sarscov2-ctscan")
)

#: Hyperparameters of a classifier that fits small data in about a second.
FAST = dict(
    backbone="simple_cnn", weights=None, freeze="none", image_size=16, lr=1e-2, batch_size=16,
    max_epochs=8, validation_fraction=None, early_stopping=None, random_state=0,
)


def free_port():
    """A TCP port free on 127.0.0.1 now, for a torchrun rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TrainingBatches(Callback):
    """Sizes of the training batches a net ran (importable, so that nets holding it load)."""

    def initialize(self):
        self.sizes = []
        return self

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            self.sizes.append(len(batch[1]))


def make_images(n_per_class=12, size=24, seed=0):
    """Grey uint8 slices: "COVID" has a bright blob in the upper half, "non-COVID" in the lower."""
    rng = np.random.RandomState(seed)
    images, labels = [], []
    for label, top in (("COVID", True), ("non-COVID", False)):
        for _ in range(n_per_class):
            image = rng.randint(0, 60, size=(size, size)).astype(np.uint8)
            row = rng.randint(2, size // 2 - 6) if top else rng.randint(size // 2, size - 8)
            col = rng.randint(2, size - 8)
            image[row:row + 6, col:col + 6] = rng.randint(180, 255)
            images.append(image)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=object)


@pytest.fixture(scope="session")
def images():
    return make_images()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, images):
    """The synthetic images written as PNG files, one folder per class; returns (paths, labels)."""
    root = tmp_path_factory.mktemp("ct_folder")
    X, y = images
    paths = []
    for i, (image, label) in enumerate(zip(X, y)):
        folder = root / label
        folder.mkdir(exist_ok=True)
        path = folder / f"slice_{i:03d}.png"
        Image.fromarray(image, mode="L").save(path)
        paths.append(str(path))
    return np.asarray(paths, dtype=object), y
