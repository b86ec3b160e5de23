"""Shared fixtures: small synthetic CT-like images and the real dataset's location."""

import io
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skorch.callbacks import Callback

# The tests' networks and batches are tiny: one intra-op thread is enough for them,
# while on a busy machine threads waiting for each other in every operation made fits
# ten to fifty times slower. The variable carries the setting to the scripts the tests
# start (examples, torchrun workers); set it to use more threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory, monkeypatch):
    """load_model's ONNX exports (runtime="auto", the default) go to a folder of the test run, not ~/.cache."""
    monkeypatch.setenv("SKCOVID_CACHE", str(tmp_path_factory.getbasetemp() / "skcovid-cache"))

REAL_DATA = Path(
    os.environ.get("SKCOVID_SARSCOV2_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "sarscov2-ctscan")
)

#: Hyperparameters of a classifier that fits small data in about a second: the one
#: fast configuration of the tests, which override only what they are about
#: (``{**FAST, "max_epochs": 2}``). It leaves out the default recipe's crop, test-time
#: augmentation and temperature, which tests of those options ask for.
FAST = dict(
    backbone="simple_cnn", weights=None, freeze="none", image_size=16, lr=1e-2, batch_size=16,
    max_epochs=8, validation_fraction=None, early_stopping=None, crop=None, intensity=None, tta=None,
    calibration=None,
    random_state=0,
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


class ConvOutputDtypes(Callback):
    """Dtypes of the first convolution's outputs while training (mixed precision shows here)."""

    def initialize(self):
        self.dtypes = set()
        return self

    def on_train_begin(self, net, **kwargs):
        accelerator = getattr(net, "accelerator", None)
        module = net.module_ if accelerator is None else accelerator.unwrap_model(net.module_)
        conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
        self._hook = conv.register_forward_hook(lambda m, i, out: self.dtypes.add(out.dtype))

    def on_train_end(self, net, **kwargs):
        self._hook.remove()


def named(path):
    """A ``pytest.raises`` ``match`` pattern for a message that names ``path`` (quoted or not)."""
    return f"'?{re.escape(str(path))}'?"


def png_bytes(seed=0, size=(24, 20)):
    """A PNG file's bytes: grey noise of ``size`` (width, height)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, size[::-1], dtype=np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def write_png(path, size=(24, 24), seed=0):
    """Write :func:`png_bytes` to ``path``; return ``path``."""
    Path(path).write_bytes(png_bytes(seed, size))
    return path


def scored_predictions(n=150, seed=0):
    """Labels and two-column probabilities (COVID, non-COVID) of a fair classifier, with ties."""
    rng = np.random.RandomState(seed)
    y = np.where(rng.rand(n) < 0.4, "COVID", "non-COVID").astype(object)
    score = np.clip((y == "COVID") * 0.35 + rng.rand(n) * 0.65, 0, 1).round(2)
    return y, np.column_stack([score, 1 - score])


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


@pytest.fixture(scope="session")
def simple_cnn_weights(tmp_path_factory, images):
    """A state_dict file of weights for backbone="simple_cnn" (a short fit's), as if pretrained."""
    from skcovid import TransferCNNClassifier

    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    path = tmp_path_factory.mktemp("weights") / "simple_cnn.pth"
    torch.save(clf.net_.module_.features.state_dict(), path)
    return path


def write_dicom(path, hu, *, z=0.0, series_uid="1.2.826.0.1.3680043.8.498.1", patient_id="ANON",
                patient_name="Doe^Jane", signed=False, transfer_syntax=None):
    """Write a CT slice of Hounsfield units ``hu`` (2-D ints) as a DICOM file (axial, 1 mm pixels).

    Unsigned storage with intercept -1024 by default; ``signed=True`` stores the HU
    themselves (PixelRepresentation 1, intercept 0). ``patient_name`` is there so that
    tests can check it never reaches a report or a log.
    """
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    hu = np.asarray(hu)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "CT", patient_id, patient_name
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series_uid + ".0", series_uid
    ds.Rows, ds.Columns = hu.shape
    ds.PixelSpacing = [1, 1]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, float(z)]
    ds.SliceLocation = float(z)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.RescaleSlope = 1
    if signed:
        ds.PixelRepresentation, ds.RescaleIntercept = 1, 0
        ds.PixelData = hu.astype(np.int16).tobytes()
    else:
        ds.PixelRepresentation, ds.RescaleIntercept = 0, -1024
        ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def dicom_patients(tmp_path_factory):
    """``class/patient/*.dcm``: 2 classes x 4 patients x 4 slices of 24x24 HU; returns the root.

    COVID slices have a ground-glass blob (-300 HU) in the upper half of aerated lung
    (-850 HU), normal ones in the lower half, as :func:`make_images` does.
    """
    root = tmp_path_factory.mktemp("dicom_patients")
    rng = np.random.RandomState(0)
    for label, top in (("COVID", True), ("normal", False)):
        for p in range(4):
            folder = root / label / f"{label[0]}{p:02d}"
            folder.mkdir(parents=True)
            uid = f"1.2.826.0.1.3680043.8.498.{1 + int(top)}{p + 1}"
            for k in rng.permutation(4):  # written out of anatomical order
                hu = rng.randint(-900, -800, size=(24, 24))
                row = rng.randint(2, 6) if top else rng.randint(12, 16)
                col = rng.randint(2, 16)
                hu[row:row + 6, col:col + 6] = -300
                write_dicom(folder / f"img{rng.randint(10**6)}.dcm", hu, z=2.0 * k, series_uid=uid,
                            patient_id=f"ID-{label}-{p}")
    return root
