"""Exported networks run without skcovid and give the same probabilities."""

import json
import subprocess
import sys

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


@pytest.mark.parametrize("pruner", [None, StructuredPruner(ratio=0.5), MagnitudePruner(sparsity=0.5)])
def test_torch_export_matches_predict_proba(fitted, image_folder, tmp_path, pruner):
    X, y = image_folder
    model = fitted if pruner is None else PrunedCNNClassifier(
        fitted, pruner, finetune_epochs=1, finetune_lr=1e-2, prefit=True).fit(X, y)
    path = export(model, tmp_path / "model.pt2")  # torch.export, from the suffix
    extra = {"skcovid.json": ""}
    loaded = torch.export.load(str(path), extra_files=extra).module()
    meta = json.loads(extra["skcovid.json"])
    assert meta["classes"] == ["COVID", "non-COVID"] and meta["image_size"] == 20
    assert meta["format"] == "torch.export" and meta["quantization"] is None
    with torch.no_grad():
        proba = np.concatenate([loaded(x).numpy() for x in _pixels(X[:6])])
        batch = loaded(torch.stack([x[0] for x in _pixels(X[:3])])).numpy()  # same-size batch
    np.testing.assert_allclose(proba, model.predict_proba(X[:6]), atol=1e-5)
    np.testing.assert_allclose(batch, proba[:3], atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_is_deprecated_but_works(fitted, image_folder, tmp_path):
    X, _ = image_folder
    with pytest.warns(FutureWarning, match="TorchScript is deprecated"):
        path = export(fitted, tmp_path / "model.pt")  # .pt: TorchScript, as before
    extra = {"skcovid.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["skcovid.json"])["format"] == "torchscript"
    with torch.no_grad():
        proba = np.concatenate([loaded(x).numpy() for x in _pixels(X[:4])])
    np.testing.assert_allclose(proba, fitted.predict_proba(X[:4]), atol=1e-5)


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
        export(TransferCNNClassifier(), tmp_path / "m.pt2")
    assert not list(tmp_path.iterdir())


def test_export_argument_errors(fitted, image_folder, tmp_path):
    X, _ = image_folder
    with pytest.raises(ValueError, match="quantize='int8' needs calibration"):
        export(fitted, tmp_path / "m.onnx", quantize="int8")
    with pytest.raises(ValueError, match="needs format='onnx'"):
        export(fitted, tmp_path / "m.pt2", quantize="int8", calibration=X)
    with pytest.raises(ValueError, match="quantize='int4' is not valid"):
        export(fitted, tmp_path / "m.onnx", quantize="int4", calibration=X)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------- ONNX Runtime
@pytest.fixture(scope="module")
def onnx_files(fitted, image_folder, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    X, _ = image_folder
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = export(fitted, folder / "model.onnx")
    int8 = export(fitted, folder / "model-int8.onnx", quantize="int8", calibration=X[::2])
    return fp32, int8


def test_int8_export(onnx_files, fitted, image_folder):
    import onnx

    from skcovid import load_onnx

    X, _ = image_folder
    fp32, int8 = onnx_files
    graph = onnx.load(str(int8)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = {init.name: init.data_type for init in graph.initializer}
    conv_weights = [node.input[1] for node in graph.node if node.op_type == "DequantizeLinear"
                    and weights.get(node.input[0]) == onnx.TensorProto.INT8]
    assert conv_weights, "no int8 weights in the quantised model"
    assert int8.stat().st_size < fp32.stat().st_size
    model = load_onnx(int8)
    meta = model.metadata
    assert meta["quantization"]["dtype"] == "int8" and meta["quantization"]["n_calibration_images"] == 12
    assert "int8" in repr(model)
    # 8-bit weights and activations: close to the float model, not equal to it.
    proba = model.predict_proba(X)
    reference = fitted.predict_proba(X)
    assert np.abs(proba - reference).mean() < 0.05
    assert np.mean(model.predict(X) == fitted.predict(X)) >= 0.9
    # Still any batch and image size.
    other = np.random.RandomState(0).rand(3, 1, 41, 29).astype(np.float32)
    assert model.session.run(None, {"image": other})[0].shape == (3, 2)


def test_load_onnx_matches_predict_proba_without_torch(onnx_files, fitted, image_folder):
    """A point-of-care process: skcovid's readers and ONNX Runtime, no torch, no scikit-learn."""
    X, _ = image_folder
    fp32, _ = onnx_files
    script = (
        "import json, sys\n"
        "from skcovid import load_onnx\n"
        f"model = load_onnx({str(fp32)!r}, n_threads=1)\n"
        f"proba = model.predict_proba({list(X[:8])!r}, batch_size=3)\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'skorch', 'sklearn') if m in sys.modules)\n"
        "print(json.dumps({'proba': proba.tolist(), 'classes': model.classes_.tolist(), 'heavy': heavy}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert out["classes"] == ["COVID", "non-COVID"]
    np.testing.assert_allclose(out["proba"], fitted.predict_proba(X[:8]), atol=1e-4)


def test_load_onnx_on_arrays_and_dicom(dicom_patients, tmp_path):
    """HU models take HU inside; DICOM paths and HU arrays read as skcovid reads them, raster files refused."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from skcovid import load_onnx
    from skcovid._imaging.medical import read_hu
    from skcovid.datasets import load_dicom_folder

    X, y, groups = load_dicom_folder(dicom_patients)
    clf = TransferCNNClassifier(**{**FAST, "image_size": 20, "max_epochs": 2, "window": "lung"}).fit(X, y)
    model = load_onnx(export(clf, tmp_path / "hu.onnx"))
    assert model.input_units == "HU" and model.window == "lung"
    reference = clf.predict_proba(X[:5])
    np.testing.assert_allclose(model.predict_proba(X[:5]), reference, atol=1e-4)
    hu = np.stack([read_hu(x) for x in X[:5]])
    np.testing.assert_allclose(model.predict_proba(hu), reference, atol=1e-4)
    assert list(model.predict(X[:5])) == list(clf.predict(X[:5]))
    # A raster slice carries no HU: both refuse it rather than read its grey levels as HU (or as the window).
    png = tmp_path / "slice.png"
    Image.fromarray((np.random.RandomState(0).rand(24, 24) * 255).astype(np.uint8)).save(png)
    for predictor in (model, clf):
        with pytest.raises(ValueError, match=r"slice\.png' is a raster image, without Hounsfield units.*'lung'"):
            predictor.predict_proba([png])


def test_load_onnx_errors(tmp_path, image_folder):
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from skcovid import load_onnx

    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_onnx(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="garbage.onnx.*not an ONNX model"):
        load_onnx(garbage)
    identity = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    other = tmp_path / "other.onnx"
    onnx.save(identity, str(other))
    with pytest.raises(ValueError, match="not one skcovid exported"):
        load_onnx(other)
