"""The safe model format: round trips, no code run by any model file, refusals, atomic writes."""

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skcovid import PrunedCNNClassifier, TransferCNNClassifier, load_model, save_model
from skcovid._cli.main import main
from skcovid._deploy.modelfile import read_header  # private: to look inside the files
from skcovid._deploy.persistence import UntrustedModelError
from skcovid.pruning import MagnitudePruner, StructuredPruner

from conftest import FAST, TrainingBatches


def _document(path):
    return json.loads(read_header(Path(path).read_bytes())["__metadata__"]["skcovid"])


def _params(estimator):
    """get_params, with the estimators in it as (class, their params), for comparisons."""
    return {k: (type(v).__name__, _params(v)) if isinstance(v, BaseEstimator) else v
            for k, v in estimator.get_params(deep=False).items()}


def _pruned(pruner, **params):
    base = TransferCNNClassifier(**{**FAST, "max_epochs": 2, **params})
    return PrunedCNNClassifier(base, pruner, finetune_epochs=1)


MODELS = {
    "unpruned": lambda: TransferCNNClassifier(**{**FAST, "max_epochs": 2, "hidden_units": (8,)}),
    "structured": lambda: _pruned(StructuredPruner(ratio=0.5, importance="taylor"), hidden_units=(8,)),
    "magnitude": lambda: _pruned(MagnitudePruner(sparsity=0.8)),
    # Depthwise convolutions (groups), static-padding convolutions, squeeze-excitation.
    "depthwise": lambda: PrunedCNNClassifier(
        TransferCNNClassifier(**{**FAST, "backbone": "efficientnet_lite0", "image_size": 32, "max_epochs": 1}),
        StructuredPruner(ratio=0.3), finetune_epochs=0),
    "multi_window": lambda: TransferCNNClassifier(**{**FAST, "max_epochs": 2, "window": "multi",
                                                     "freeze": "backbone", "pooling": "max"}),
}


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    with pytest.warns(UserWarning, match="randomly initialised"):  # multi_window's frozen random stages
        return {name: make().fit(X, y) for name, make in MODELS.items()}


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("safe")
    return {name: save_model(clf, folder / f"{name}.skcovid") for name, clf in fitted.items()}


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_gives_identical_probabilities(name, fitted, saved, images):
    X, _ = images
    clf, path = fitted[name], saved[name]
    assert isinstance(path, Path) and path.is_file()
    loaded = load_model(path, runtime="torch")
    assert type(loaded) is type(clf)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    assert _params(loaded) == _params(clf)
    assert loaded.classes_.dtype == clf.classes_.dtype and loaded.history_ == clf.history_
    owner, loaded_owner = getattr(clf, "estimator_", clf), getattr(loaded, "estimator_", loaded)
    assert loaded_owner.net_.device == "cpu" and not loaded_owner.net_.optimizer_.state
    assert len(loaded_owner.net_.history) == len(owner.net_.history)
    parameters = dict(loaded_owner.net_.module_.named_parameters())
    assert set(parameters) == {name for name, _ in owner.net_.module_.named_parameters()}
    for name, param in owner.net_.module_.named_parameters():
        assert parameters[name].shape == param.shape and parameters[name].requires_grad == param.requires_grad
    if isinstance(clf, PrunedCNNClassifier):
        assert loaded.pruning_report() == clf.pruning_report()
        assert _params(loaded.pruner_) == _params(clf.pruner_)


def test_pruned_networks_are_stored_as_what_pruning_changed(fitted, saved):
    structured = _document(saved["structured"])["estimator"]
    network = structured["attributes"]["estimator_"]["__estimator__"]["network"]["module"]
    assert network["layers"]["features.block1.0"]["out_channels"] == 8  # 16 channels, half pruned
    # The head is built at its pruned widths (hidden_units=(8,) lost half its units).
    assert network["hidden_units"] == [4] and network["n_features"] == 64 and not network["sparse"]
    pruner = structured["attributes"]["pruner_"]["__estimator__"]
    assert pruner["dropped"] == ["gradients_"]  # Taylor gradients: tensors of the unpruned network
    depthwise = _document(saved["depthwise"])["estimator"]["attributes"]["estimator_"]["__estimator__"]
    assert any("groups" in attrs for attrs in depthwise["network"]["module"]["layers"].values())
    # Magnitude pruning: mostly-zero tensors as bit masks plus their non-zero values.
    magnitude = fitted["magnitude"]
    network = _document(saved["magnitude"])["estimator"]["attributes"]["estimator_"]["__estimator__"]["network"]
    assert "features.block4.0.weight" in network["module"]["sparse"] and not network["module"]["layers"]
    assert saved["magnitude"].stat().st_size < 0.35 * magnitude.model_size_bytes_before_


@pytest.mark.parametrize("kind", ["int", "bool", "str", "object"])
def test_labels_round_trip_exactly(kind, images, tmp_path):
    X, y = images
    y = {"int": (y == "COVID").astype(int) * 3, "bool": y == "COVID", "str": y.astype(str),
         "object": y}[kind]
    # Class weights (a dict keyed by labels; a tensor in the net) come back too.
    class_weight = {"int": {0: 1.0, 3: 2.0}, "bool": "balanced"}.get(kind)
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "class_weight": class_weight}).fit(X, y)
    loaded = load_model(save_model(clf, tmp_path / "m.skcovid"), runtime="torch")
    assert loaded.get_params() == clf.get_params()
    if class_weight is not None:
        assert torch.equal(loaded.net_.criterion_.weight, clf.net_.criterion_.weight)
    assert loaded.classes_.dtype == clf.classes_.dtype
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    assert [type(c) for c in loaded.predict(X)] == [type(c) for c in clf.predict(X)]
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_a_new_process_predicts_the_same(fitted, saved, images, tmp_path):
    X, _ = images
    np.save(tmp_path / "X.npy", X)
    code = ("import json, sys, numpy as np; from skcovid import load_model; X = np.load(sys.argv[1]); "
            "print(json.dumps({p: load_model(p, runtime='torch').predict_proba(X).tolist() for p in sys.argv[2:]}))")
    names = ["unpruned", "structured", "magnitude"]
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "X.npy"),
                             *(str(saved[n]) for n in names)],
                            capture_output=True, text=True, check=True, timeout=300)
    proba = json.loads(result.stdout.strip().splitlines()[-1])
    for name in names:
        np.testing.assert_array_equal(np.asarray(proba[str(saved[name])]), fitted[name].predict_proba(X))


# ---------------------------------------------------------------- no code runs
class _Payload:
    """Unpickling it creates a file: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["pickle", "joblib"])
@pytest.mark.parametrize("name", ["model.skcovid", "model.joblib", "model.safetensors", "model"])
def test_a_pickle_payload_never_runs(name, writer, image_folder, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        joblib.dump(_Payload(marker), path)
    with pytest.raises(UntrustedModelError, match=rf"Refused to load {path}.*run.*code.*trusted=True.*--trust-pickle"):
        load_model(path)
    image = image_folder[0][0]
    for argv in (["predict", path, image], ["evaluate", path, Path(image).parents[1]],
                 ["explain", path, image, "--out", tmp_path / "explain"]):
        assert main([str(a) for a in argv]) == 1
        assert "--trust-pickle" in capsys.readouterr().err
    assert not marker.exists()
    # The payload is real: trusting the file runs it.
    with pytest.raises(ValueError, match="not a scikit-learn estimator"):
        load_model(path, trusted=True)
    assert marker.exists()


def test_trusted_loads_a_joblib_model(fitted, images, image_folder, tmp_path, capsys):
    X, _ = images
    clf = fitted["unpruned"]
    path = save_model(clf, tmp_path / "legacy.joblib", format="pickle")
    assert read_header(path.read_bytes()) is None
    with pytest.raises(UntrustedModelError):
        load_model(path)
    np.testing.assert_array_equal(load_model(path, trusted=True, runtime="torch").predict_proba(X),
                                  clf.predict_proba(X))
    image = image_folder[0][0]
    assert main(["predict", str(path), image, "-q"]) == 1
    assert main(["predict", str(path), image, "-q", "--trust-pickle"]) == 0
    assert image in capsys.readouterr().out
    # A safe file needs no trust, and trusting it changes nothing.
    safe = save_model(load_model(path, trusted=True, runtime="torch"), tmp_path / "converted.skcovid")
    np.testing.assert_array_equal(load_model(safe, trusted=True, runtime="torch").predict_proba(X),
                                  clf.predict_proba(X))
    # The default runtime predicts through ONNX Runtime, and only the estimator can be saved again.
    with pytest.raises(TypeError, match="got a OnnxClassifier.*load_model\\(path, runtime='torch'\\)"):
        save_model(load_model(safe), tmp_path / "again.skcovid")


def _safetensors_file(path, metadata):
    header = json.dumps({"__metadata__": metadata}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def test_a_file_saved_before_cycles_and_target_flops_loads(fitted, saved, images, tmp_path):
    """Such a file has no new parameters or attributes, and its pruners may carry ``iterative_steps``."""
    data = saved["structured"].read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    document = json.loads(header["__metadata__"]["skcovid"])
    estimator = document["estimator"]
    for name in ("cycles", "distillation_alpha", "distillation_temperature"):
        del estimator["params"][name]
    del estimator["attributes"]["cycles_"]
    for pruner in (estimator["params"]["pruner"]["__estimator__"],
                   estimator["attributes"]["pruner_"]["__estimator__"]):
        pruner["params"] = {"ratio": 0.5, "importance": "taylor", "global_pruning": False, "round_to": None,
                            "iterative_steps": 3}
    del estimator["attributes"]["pruner_"]["__estimator__"]["attributes"]["ratio_"]
    header["__metadata__"]["skcovid"] = json.dumps(document)
    raw = json.dumps(header).encode()
    path = tmp_path / "old.skcovid"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length:])
    loaded = load_model(path, runtime="torch")
    X, _ = images
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted["structured"].predict_proba(X))
    assert loaded.pruner.get_params() == StructuredPruner(ratio=0.5, importance="taylor").get_params()
    assert loaded.cycles == 1 and loaded.distillation_alpha == 0.0
    report = loaded.pruning_report()
    assert report["cycles"] == [] and report["ratio"] == 0.5


def test_crafted_safe_files_are_rejected_without_running_anything(saved, tmp_path):
    with pytest.raises(ValueError, match="safetensors file but not a skcovid model"):
        load_model(_safetensors_file(tmp_path / "plain.safetensors", {"name": "x"}))
    document = _document(saved["unpruned"])
    for change, match in [({"format_version": 99}, "newer skcovid"),
                          ({"estimator": {"class": "os.system", "params": {"command": "touch pwned"}}},
                           "not a skcovid classifier"),
                          ({"estimator": {"class": "TransferCNNClassifier",
                                          "params": {"backbone": {"__estimator__": {"class": "subprocess.Popen",
                                                                                    "params": {}}}}}},
                           "unknown estimator class 'subprocess.Popen'")]:
        path = _safetensors_file(tmp_path / "crafted.skcovid", {"skcovid": json.dumps({**document, **change})})
        with pytest.raises(ValueError, match=f"Could not read a model from .*crafted.skcovid.*{match}"):
            load_model(path)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------- refusals
def _backbone():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))


@pytest.mark.parametrize("estimator, match", [
    (TransferCNNClassifier(backbone=_backbone), "backbone=.*callable backbone is code"),
    (TransferCNNClassifier(callbacks=[("b", TrainingBatches())]), "callbacks=.*callbacks are code"),
    (TransferCNNClassifier(random_state=np.random.RandomState(0)), "random_state=.*int seed"),
    (TransferCNNClassifier(optimizer=torch.optim.RMSprop), "optimizer=.*adam, adamax, adamw, sgd"),
    (PrunedCNNClassifier(TransferCNNClassifier(callbacks=[TrainingBatches()])), "estimator.callbacks="),
    (make_pipeline(FunctionTransformer(), TransferCNNClassifier()), "got a Pipeline"),
    (StructuredPruner(), "got a StructuredPruner"),
])
def test_what_the_safe_format_cannot_store_is_refused(estimator, match, tmp_path):
    with pytest.raises((TypeError, ValueError), match=match) as info:
        save_model(estimator, tmp_path / "m.skcovid")
    assert "format='pickle'" in str(info.value)
    assert not os.listdir(tmp_path)
    save_model(estimator, tmp_path / "m.joblib", format="pickle")  # the way out the message names
    with pytest.raises(ValueError, match="format must be"):
        save_model(estimator, tmp_path / "m.x", format="onnx")


def test_unfitted_classifiers_and_per_process_settings(tmp_path):
    clf = PrunedCNNClassifier(TransferCNNClassifier(optimizer=torch.optim.Adam, hidden_units=(4, 2),
                                                    window=(-600, 1500), class_weight={"COVID": 2.0},
                                                    memory=str(tmp_path / "cache")),
                              MagnitudePruner(sparsity=0.3), prefit=False)
    loaded = load_model(save_model(clf, tmp_path / "m.skcovid"), runtime="torch")
    expected = _params(clf)
    expected["estimator"][1]["memory"] = None  # a cache of this machine (joblib pickles): not stored
    assert _params(loaded) == expected
    assert loaded.estimator.optimizer is torch.optim.Adam and loaded.estimator.window == (-600, 1500)
    assert not hasattr(loaded, "classes_")


def test_a_feature_cache_is_not_carried_by_the_file(images, tmp_path):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "weights": None, "freeze": "backbone", "max_epochs": 3,
                                   "memory": str(tmp_path / "cache")})
    with pytest.warns(UserWarning, match="randomly initialised"):
        clf.fit(X, y)
    assert clf.precomputed_features_ and clf.net_.feature_cache is not None
    loaded = load_model(save_model(clf, tmp_path / "m.skcovid"), runtime="torch")
    assert loaded.memory is None and loaded.net_.feature_cache is None and loaded.precomputed_features_
    # The whole network computes what the cached features gave (equal here; a batch of other
    # images could round differently in the last bit).
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------- atomicity
def test_a_failing_save_keeps_the_previous_file(fitted, tmp_path, monkeypatch):
    path = save_model(fitted["unpruned"], tmp_path / "m.skcovid")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="callbacks are code"):
        save_model(TransferCNNClassifier(callbacks=[TrainingBatches()]), path)

    def full_disk(fd):
        raise OSError("No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_model(fitted["magnitude"], path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.skcovid"]


def test_the_command_line_saves_the_safe_format(image_folder, tmp_path, capsys):
    data = Path(image_folder[0][0]).parents[1]
    out = tmp_path / "model.joblib"  # any name: the content decides
    assert main(["train", str(data), "--out", str(out), "--backbone", "simple_cnn", "--weights", "none",
                 "--freeze", "none", "--image-size", "16", "--epochs", "2", "--early-stopping", "none",
                 "--validation-fraction", "none", "--calibration", "none", "--prune", "magnitude:0.5",
                 "--finetune-epochs", "1", "-q"]) == 0
    assert _document(out)["estimator"]["class"] == "PrunedCNNClassifier"
    # The default recipe's settings travel in the file.
    inner = load_model(out, runtime="torch").estimator_
    assert (inner.crop, inner.intensity, inner.tta, inner.calibration) == ("lungs", "auto", "flip", None)
    assert main(["predict", str(out), image_folder[0][0], "-q"]) == 0
    assert image_folder[0][0] in capsys.readouterr().out


def test_fold_ensemble_round_trip(images, tmp_path):
    from sklearn.ensemble import VotingClassifier
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import cross_validate

    X, y = images
    folds = cross_validate(TransferCNNClassifier(**{**FAST, "max_epochs": 2}), X, y, cv=2,
                           return_estimator=True)["estimator"]
    ensemble = VotingClassifier([(f"fold_{i}", FrozenEstimator(m)) for i, m in enumerate(folds)],
                                voting="soft").fit(X, y)
    save_model(ensemble, tmp_path / "ensemble.skcovid")
    document = _document(tmp_path / "ensemble.skcovid")
    assert document["format_version"] == 2 and len(document["estimator"]["members"]) == 2
    loaded = load_model(tmp_path / "ensemble.skcovid", runtime="torch")
    np.testing.assert_array_equal(loaded.predict_proba(X), ensemble.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, ensemble.classes_)
    assert [name for name, _ in loaded.estimators] == ["fold_0", "fold_1"]
    save_model(folds[0], tmp_path / "single.skcovid")
    assert _document(tmp_path / "single.skcovid")["format_version"] == 1  # older readers still read it
    # Only the fold ensembles skcovid makes: soft voting over frozen classifiers.
    for other in (VotingClassifier([(f"fold_{i}", FrozenEstimator(m)) for i, m in enumerate(folds)],
                                   voting="hard").fit(X, y),
                  VotingClassifier([(f"fold_{i}", m) for i, m in enumerate(folds)], voting="soft").fit(X, y)):
        with pytest.raises(TypeError, match="voting='soft' over FrozenEstimator"):
            save_model(other, tmp_path / "other.skcovid")


def test_an_ensemble_of_pruners_is_refused_on_load(images, tmp_path):
    """A file may name a pruner only inside a PrunedCNNClassifier, never as an ensemble member."""
    from sklearn.ensemble import VotingClassifier
    from sklearn.frozen import FrozenEstimator

    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    ensemble = VotingClassifier([("fold_0", FrozenEstimator(clf))], voting="soft").fit(X, y)
    save_model(ensemble, tmp_path / "ensemble.skcovid")
    data = (tmp_path / "ensemble.skcovid").read_bytes()
    header = read_header(data)
    document = json.loads(header["__metadata__"]["skcovid"])
    document["estimator"]["members"][0]["estimator"] = {"class": "StructuredPruner", "params": {}}
    from safetensors.torch import load, save

    forged = save(load(data), metadata={"skcovid": json.dumps(document)})
    (tmp_path / "forged.skcovid").write_bytes(forged)
    with pytest.raises(ValueError, match="'StructuredPruner', not a skcovid classifier"):
        load_model(tmp_path / "forged.skcovid")
