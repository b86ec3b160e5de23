"""Exported networks run without skcovid and give the same probabilities."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from skcovid import PrunedCNNClassifier, TransferCNNClassifier, export
from skcovid.pruning import MagnitudePruner, StructuredPruner

from conftest import FAST


@pytest.fixture(scope="module")
def fitted(image_folder):
    X, y = image_folder
    return TransferCNNClassifier(**{**FAST, "image_size": 20, "max_epochs": 3}).fit(X, y)


def _pixels(paths):
    """What a device would feed, read without skcovid: each slice in grayscale, in [0, 1], at its own size."""
    return [torch.from_numpy(np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255)[None, None]
            for p in paths]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("pruner", [None, StructuredPruner(ratio=0.5), MagnitudePruner(sparsity=0.5)])
def test_torchscript_matches_predict_proba(fitted, image_folder, tmp_path, pruner):
    X, y = image_folder
    model = fitted if pruner is None else PrunedCNNClassifier(
        fitted, pruner, finetune_epochs=1, finetune_lr=1e-2, prefit=True).fit(X, y)
    path = export(model, tmp_path / "model.pt")
    extra = {"skcovid.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["skcovid.json"])
    assert meta["classes"] == ["COVID", "non-COVID"] and meta["image_size"] == 20
    with torch.no_grad():
        proba = np.concatenate([loaded(x).numpy() for x in _pixels(X[:6])])
        batch = loaded(torch.stack([x[0] for x in _pixels(X[:3])])).numpy()  # same-size batch
    np.testing.assert_allclose(proba, model.predict_proba(X[:6]), atol=1e-5)
    np.testing.assert_allclose(batch, proba[:3], atol=1e-5)


def test_onnx_matches_predict_proba(fitted, image_folder, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, _ = image_folder
    path = export(fitted, tmp_path / "model.onnx", format="onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["skcovid"])
    assert meta["classes"] == ["COVID", "non-COVID"]
    proba = np.concatenate([session.run(None, {"image": x.numpy()})[0] for x in _pixels(X[:6])])
    np.testing.assert_allclose(proba, fitted.predict_proba(X[:6]), atol=1e-4)
    # Another input size and batch size than the example it was exported with.
    other = np.random.RandomState(0).rand(3, 1, 41, 29).astype(np.float32)
    assert session.run(None, {"image": other})[0].shape == (3, 2)


def test_export_errors(fitted, tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(ValueError, match="format='tflite' is not valid"):
        export(fitted, tmp_path / "m", format="tflite")
    with pytest.raises(NotFittedError):
        export(TransferCNNClassifier(), tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())
