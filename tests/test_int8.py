"""INT8 export with accuracy-aware mixed precision, cross-layer equalisation, and ``skcovid export``."""

import numpy as np
import pytest
import torch
from torch import nn

from skcovid import TransferCNNClassifier, export, load_onnx
from skcovid._cli.main import main

from conftest import FAST

# Among the slowest tests: `pytest -m "not slow"` leaves them out of the quick development loop.
pytestmark = pytest.mark.slow

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    return TransferCNNClassifier(**{**FAST, "image_size": 20, "max_epochs": 3}).fit(X, y)


@pytest.fixture(scope="module")
def boundary(fitted, images):
    """Blends of a COVID and a non-COVID slice whose float32 probability is within 2e-4 of 0.5, labelled
    with the float model's decision: it scores 1.0, and quantisation noise flips some of them."""
    X, y = images
    covid, other = X[y == "COVID"] / 255, X[y != "COVID"] / 255
    low, high = np.zeros(len(covid)), np.ones(len(covid))  # blend weight of the COVID slice

    def p_covid(alpha):
        return fitted.predict_proba(alpha[:, None, None] * covid + (1 - alpha[:, None, None]) * other)[:, 0]

    sign = np.sign(p_covid(high) - 0.5)
    assert np.all(sign == -np.sign(p_covid(low) - 0.5)), "every pair must cross the boundary"
    chosen, found = np.zeros(len(covid)), np.zeros(len(covid), dtype=bool)
    for _ in range(40):  # bisection; each pair keeps the first blend close enough to the boundary
        middle = (low + high) / 2
        p = p_covid(middle)
        close = (np.abs(p - 0.5) > 1e-5) & (np.abs(p - 0.5) < 2e-4) & ~found
        chosen[close], found = middle[close], found | close
        above = np.sign(p - 0.5) == sign
        high, low = np.where(above, middle, high), np.where(above, low, middle)
    assert found.sum() >= 8
    alpha = chosen[found][:, None, None]
    blends = (alpha * covid[found] + (1 - alpha) * other[found]).astype(np.float32)
    return blends, fitted.predict(blends)


def _quantization(path):
    return load_onnx(path).metadata["quantization"]


def _lost(figures):
    return max(figures["float32"][key] - figures["quantized"][key] for key in ("accuracy", "roc_auc"))


def test_validation_figures_of_both_models_are_recorded(fitted, images, boundary, tmp_path):
    X, _ = images
    record = _quantization(export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=boundary))
    assert record["dtype"] == "int8" and record["tolerance"] is None and record["float_nodes"] == []
    figures = record["validation"]
    assert figures["n_images"] == len(boundary[0])
    assert figures["float32"] == {"accuracy": 1.0, "roc_auc": 1.0}
    assert figures["quantized"] == figures["all_int8"]
    assert _lost(figures) > 0, "quantisation flips none of the boundary slices: the other tests test nothing"


def test_tolerance_zero_returns_the_float_model(fitted, images, boundary, tmp_path):
    X, _ = images
    path = export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=boundary, tolerance=0)
    record = _quantization(path)
    graph = onnx.load(str(path)).graph
    assert record["dtype"] == "float32"
    assert not {"QuantizeLinear", "DequantizeLinear"} & {node.op_type for node in graph.node}
    assert len(record["float_nodes"]) == record["n_quantizable_nodes"] > 0
    assert set(record["float_nodes"]) <= {node.name for node in graph.node}
    assert record["validation"]["quantized"] == record["validation"]["float32"]
    assert record["validation"]["all_int8"]["accuracy"] < 1.0
    np.testing.assert_allclose(load_onnx(path).predict_proba(X), fitted.predict_proba(X), atol=1e-5)


def test_a_loose_tolerance_quantises_every_node(fitted, images, boundary, tmp_path):
    X, _ = images
    record = _quantization(export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X,
                                  validation=boundary, tolerance=1.0))
    assert record["dtype"] == "int8" and record["float_nodes"] == [] and record["tolerance"] == 1.0
    assert record["validation"]["n_models_measured"] == 1


def test_tolerance_returns_the_most_sensitive_nodes_to_float(fitted, images, boundary, tmp_path):
    X, _ = images
    all_int8 = _quantization(export(fitted, tmp_path / "a.onnx", quantize="int8", calibration=X,
                                    validation=boundary))
    tolerance = _lost(all_int8["validation"]) / 2
    path = export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=boundary,
                  tolerance=tolerance)
    record = _quantization(path)
    assert _lost(record["validation"]) <= tolerance
    assert 1 <= len(record["float_nodes"]) <= record["n_quantizable_nodes"]
    assert set(record["excluded_nodes"]) <= set(record["float_nodes"]) and record["excluded_nodes"]
    # The nodes that stayed float are those with a float input that no DequantizeLinear gives them.
    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    other = {init.name for init in graph.initializer if init.data_type != onnx.TensorProto.FLOAT}
    for node in graph.node:
        floats = [i for i in node.input if i and i not in dequantized and i not in other]
        if node.name in record["float_nodes"]:
            assert floats, node.name


def test_without_labels_the_search_holds_the_float_models_labels_on_the_calibration_slices(fitted, images,
                                                                                         boundary, tmp_path):
    """The call users make, export(quantize="int8", calibration=X): no labels, and the search stops at the tolerance.

    The calibration slices include the boundary blends, whose decisions quantisation flips: with every node in
    INT8 some labels differ from float32's, and the default tolerance (99% of the same labels) returns nodes to
    float32 until they do not.
    """
    from skcovid._deploy.int8 import AGREEMENT_TOLERANCE

    X, _ = images
    calibration = np.concatenate([boundary[0], X[:8] / 255]).astype(np.float32)
    path = export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=calibration)
    record = _quantization(path)
    agreement = record["agreement"]
    assert record["validation"] is None and record["tolerance"] == AGREEMENT_TOLERANCE
    assert agreement["n_images"] == len(calibration) and agreement["float32"]["label_agreement"] == 1.0
    assert agreement["all_int8"]["label_agreement"] < 1 - AGREEMENT_TOLERANCE, "nothing for the search to do"
    assert agreement["quantized"]["label_agreement"] >= 1 - AGREEMENT_TOLERANCE
    assert agreement["quantized"]["mean_abs_diff"] <= AGREEMENT_TOLERANCE
    assert record["excluded_nodes"] and agreement["n_models_measured"] > 1
    same = load_onnx(path).predict(calibration) == fitted.predict(calibration)
    assert same.mean() >= 1 - AGREEMENT_TOLERANCE
    # A loose tolerance keeps every node in INT8 at the first try.
    loose = _quantization(export(fitted, tmp_path / "l.onnx", quantize="int8", calibration=calibration, tolerance=1))
    assert loose["float_nodes"] == [] and loose["agreement"]["n_models_measured"] == 1


def test_int8_argument_errors(fitted, images, boundary, tmp_path):
    X, y = images
    with pytest.raises(ValueError, match="validation= applies to quantize='int8' only"):
        export(fitted, tmp_path / "m.onnx", validation=(X, y))
    with pytest.raises(ValueError, match="equalize= applies to quantize='int8' only"):
        export(fitted, tmp_path / "m.onnx", equalize=True)
    for bad in (-0.1, 2, "0.01", True):
        with pytest.raises(ValueError, match="tolerance=.* is not valid"):
            export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=(X, y), tolerance=bad)
    with pytest.raises(ValueError, match="no slice of class"):
        export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=(X[:3], y[:3]))
    with pytest.raises(ValueError, match="does not know"):
        export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=(X, np.where(y == "COVID",
                                                                                                    "x", y)))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, validation=(X[:4], y[:3]))
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------- cross-layer equalisation
class _Pairs(nn.Module):
    """Conv -> ReLU -> Conv -> ReLU -> depthwise Conv -> ReLU6 -> Conv, with channel ranges far apart."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 1)
        self.c, self.d = nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            self.a.weight.mul_(torch.logspace(-2, 1, 8).view(-1, 1, 1, 1))

    def forward(self, x):
        return self.d(torch.clamp(self.c(torch.relu(self.b(torch.relu(self.a(x))))), 0, 6))


def test_equalization_keeps_the_function_and_equalises_relu_pairs_only(tmp_path):
    from onnx import numpy_helper
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from skcovid._deploy.equalize import equalize_graph

    raw, prepared = str(tmp_path / "raw.onnx"), str(tmp_path / "prepared.onnx")
    torch.onnx.export(_Pairs().eval(), (torch.rand(1, 1, 12, 12),), raw, input_names=["image"], dynamo=True,
                      opset_version=18)
    quant_pre_process(raw, prepared)
    model = onnx.load(prepared)
    x = np.random.RandomState(0).rand(1, 1, 12, 12).astype(np.float32)
    before = ort.InferenceSession(prepared).run(None, {"image": x})[0]
    assert equalize_graph(model.graph) == 2  # not the pair joined by ReLU6
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"image": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-6)

    def ranges(graph):
        weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        a, b, c, d = (weights[node.input[1]] for node in graph.node if node.op_type == "Conv")
        return (np.abs(a).reshape(8, -1).max(axis=1), np.abs(b).transpose(1, 0, 2, 3).reshape(8, -1).max(axis=1),
                np.abs(b).reshape(8, -1).max(axis=1), np.abs(c).reshape(8, -1).max(axis=1), c, d)

    *_, c_before, d_before = ranges(onnx.load(prepared).graph)
    a_out, b_in, b_out, c_in, c, d = ranges(model.graph)
    spread = a_out.max() / a_out.min()
    # Each pair's channel ranges agree, and the first layer's spread of ranges shrank by far.
    np.testing.assert_allclose(a_out, b_in, rtol=0.01)
    np.testing.assert_allclose(b_out, c_in, rtol=0.01)
    first = ranges(onnx.load(prepared).graph)[0]
    assert first.max() / first.min() > 100 and spread < first.max() / first.min() / 5
    np.testing.assert_array_equal(d, d_before)  # across ReLU6: untouched
    assert not np.array_equal(c, c_before)


def test_equalized_int8_export_records_it(fitted, images, boundary, tmp_path):
    X, _ = images
    path = export(fitted, tmp_path / "m.onnx", quantize="int8", calibration=X, equalize=True)
    record = _quantization(path)
    assert record["equalization"] is True and record["n_equalized_pairs"] == 0  # simple_cnn: ReLU, max-pool, Conv
    assert np.mean(load_onnx(path).predict(X) == fitted.predict(X)) >= 0.9


# ----------------------------------------------------------------------- skcovid export
@pytest.fixture(scope="module")
def model_file(fitted, tmp_path_factory):
    from skcovid import save_model

    return save_model(fitted, tmp_path_factory.mktemp("model") / "model.skcovid")


def _class_folder(root, X, y):
    from PIL import Image

    for i, (image, label) in enumerate(zip(X, y)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(np.asarray(image) * 255).astype(np.uint8), mode="L").save(root / label / f"{i}.png")
    return root


def test_export_command_int8_with_tolerance(model_file, image_folder, images, tmp_path, capsys):
    X, y = images
    calibration = _class_folder(tmp_path / "calibration", X / 255, y)
    validation = _class_folder(tmp_path / "validation", X[::2] / 255, y[::2])
    out = tmp_path / "model-int8.onnx"
    assert main(["export", model_file, out, "--int8", "--calibration", calibration, "--validation", validation,
                 "--tolerance", "0.5", "-q"]) == 0
    printed = capsys.readouterr().out
    record = _quantization(out)
    assert f"quantised ({len(X)} calibration slices)" in printed
    assert f"{record['n_quantizable_nodes']} of {record['n_quantizable_nodes']} quantisable nodes in int8" in printed
    assert f"validation ({len(X[::2])} slices, tolerance 0.5): float32 accuracy" in printed
    assert f"written model accuracy {record['validation']['quantized']['accuracy']:.4f}" in printed
    assert f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB; the float32 ONNX file is" in printed


def test_export_command_on_a_pruned_model_without_labels(images, tmp_path, capsys):
    """The point-of-care path: a pruned model, INT8 from training slices alone; size, latency and agreement printed."""
    from skcovid import PrunedCNNClassifier, save_model
    from skcovid.pruning import StructuredPruner

    X, y = images
    pruned = PrunedCNNClassifier(TransferCNNClassifier(**{**FAST, "image_size": 20, "max_epochs": 2}),
                                 StructuredPruner(ratio=0.5), finetune_epochs=1).fit(X, y)
    model_file = save_model(pruned, tmp_path / "pruned.skcovid")
    calibration = _class_folder(tmp_path / "calibration", X / 255, y)
    out = tmp_path / "pruned-int8.onnx"
    assert main(["export", model_file, out, "--int8", "--calibration", calibration, "-q"]) == 0
    printed = capsys.readouterr().out
    record = _quantization(out)
    agreement = record["agreement"]["quantized"]
    assert agreement["label_agreement"] >= 0.99 and agreement["mean_abs_diff"] <= 0.01
    assert f"agreement with float32 on {len(X)} calibration slices (no labels; tolerance 0.01): " in printed
    assert "batch 1, median of 10 slices read from files:" in printed and "ms against" in printed
    assert f"same labels as float32 on {len(X)} calibration slices: 100.0%" in printed
    same = np.mean(load_onnx(out).predict(X) == pruned.predict(X))
    assert same >= 0.99


def test_export_command_float_formats(model_file, tmp_path, capsys):
    assert main(["export", model_file, tmp_path / "m.pt2", "-q"]) == 0
    assert main(["export", model_file, tmp_path / "m.bin", "--format", "onnx", "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'm.pt2'} (" in printed and f"wrote {tmp_path / 'm.bin'} (" in printed
    assert load_onnx(tmp_path / "m.bin").metadata["quantization"] is None


@pytest.mark.parametrize("argv, message", [
    (["--tolerance", "0.01"], "--tolerance applies to --int8 only"),
    (["--int8"], "--int8 needs --calibration DIR"),
    (["--equalize"], "--equalize applies to --int8 only"),
    (["--int8", "--calibration", "CAL", "--format", "torch.export"], "needs format='onnx'"),
])
def test_export_command_errors(argv, message, model_file, image_folder, tmp_path, capsys):
    folder = str(__import__("pathlib").Path(image_folder[0][0]).parents[1])
    argv = [folder if a == "CAL" else a for a in argv]
    assert main(["export", model_file, tmp_path / "m.onnx", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_export_command_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: skcovid export" in out and "--tolerance T" in out and "--validation DIR" in out
