"""Crafted and careless inputs: each is refused with an error naming the file and the field, never a silent
wrong answer, a traceback or a memory blow-up (the cases of issue 27 fixed so far)."""

import json
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load, save
from skorch.callbacks import Callback

from skcovid import TransferCNNClassifier, load_model, save_model
from skcovid._cli.main import main
from skcovid._deploy.modelfile import read_header
from skcovid._imaging.medical import read_hu

from conftest import FAST, write_dicom


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    return TransferCNNClassifier(**{**FAST, "max_epochs": 2, "validation_fraction": 0.25,
                                    "calibration": "temperature"}).fit(X, y)


@pytest.fixture(scope="module")
def model_file(fitted, tmp_path_factory):
    return save_model(fitted, tmp_path_factory.mktemp("model") / "model.skcovid")


def _rewrite(source, target, edit):
    """A copy of a safe model file whose JSON document (and tensors) ``edit(document, tensors)`` changed."""
    data = source.read_bytes()
    document = json.loads(read_header(data)["__metadata__"]["skcovid"])
    tensors = load(data)
    edit(document, tensors)
    target.write_bytes(save(tensors, metadata={"skcovid": json.dumps(document)}))
    return target


def _set_attribute(name, value):
    def edit(document, tensors):
        document["estimator"]["attributes"][name] = value
    return edit


def _set_param(name, value):
    def edit(document, tensors):
        document["estimator"]["params"][name] = value
    return edit


def _set_net_param(name, value):
    def edit(document, tensors):
        document["estimator"]["network"]["net"]["params"][name] = value
    return edit


def _set_module(name, value):
    def edit(document, tensors):
        document["estimator"]["network"]["module"][name] = value
    return edit


def _int_head(document, tensors):
    name = next(k for k in tensors if ".module.head." in k and k.endswith(".weight"))
    tensors[name] = tensors[name].to(torch.int64)


@pytest.mark.parametrize("edit, field", [
    (_set_attribute("temperature_", 0), "temperature"),
    (_set_attribute("temperature_", -1), "temperature"),
    (_set_attribute("threshold_", float("nan")), "threshold"),
    (_set_attribute("classes_", {"__ndarray__": ["COVID", "COVID"], "dtype": "|O", "shape": [2]}), "duplicates"),
    (_set_attribute("classes_", {"__ndarray__": ["a", "b", "c"], "dtype": "|O", "shape": [3]}), "3 classes"),
    (_set_param("image_size", 40000), "image_size"),
    (_set_param("hidden_units", [20000, 20000]), "hidden_units"),
    (_set_param("patient_aggregation", "os.system"), "patient_aggregation"),
    (_set_param("window", [0, 0]), "window"),
    (_set_net_param("predict_nonlinearity", None), "predict_nonlinearity"),
    (_set_net_param("compile", True), "compile"),
    (_set_net_param("iterator_valid__sampler", "x"), "iterator_valid__sampler"),
    # Both loaded and failed only at prediction, with a bare error naming no file.
    (_set_net_param("device", "meta"), "device"),
    (_set_param("device", "meta"), "device"),
    (_set_attribute("net_", "x"), "net_"),
    (lambda document, tensors: document["estimator"].update(network="x"), "network is 'x'"),
    (_set_module("hidden_units", [20000, 20000]), "head"),
    (_set_module("image_size", 40000), "image_size"),
    (_int_head, "int64"),
])
def test_crafted_values_are_refused_naming_the_file(model_file, tmp_path, edit, field):
    crafted = _rewrite(model_file, tmp_path / "crafted.skcovid", edit)
    with pytest.raises(ValueError, match=rf"crafted\.skcovid.*{field}"):
        load_model(crafted)


def test_an_array_declaring_huge_items_is_refused_before_allocation(model_file, tmp_path):
    huge = {"__ndarray__": ["COVID", "non-COVID"], "dtype": "<U400000000", "shape": [2]}
    crafted = _rewrite(model_file, tmp_path / "huge.skcovid", _set_attribute("classes_", huge))
    with pytest.raises(ValueError, match=r"huge\.skcovid.*array items of 1600000000 bytes"):
        load_model(crafted)


def test_machine_settings_in_a_file_are_not_kept(model_file, tmp_path):
    crafted = _rewrite(model_file, tmp_path / "memory.skcovid", _set_param("memory", str(tmp_path / "cache")))
    assert load_model(crafted, runtime="torch").memory is None


def test_a_loaded_or_fitted_network_is_in_eval_mode_and_threads_agree(fitted, model_file, images):
    X, _ = images
    assert fitted.net_.module_.training is False
    loaded = load_model(model_file, runtime="torch")
    assert loaded.net_.module_.training is False
    expected = loaded.predict_proba(X)
    results = [None] * 4

    def work(i):
        results[i] = [loaded.predict_proba(X) for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(p, expected) for result in results for p in result)
    assert loaded.net_.module_.training is False


def test_nan_weights_never_become_a_label(fitted, images):
    X, _ = images
    broken = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(*images)
    with torch.no_grad():
        next(broken.net_.module_.head.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite numbers for 24 of 24 images"):
        broken.predict(X)


class _Poison(Callback):
    """Turns a weight to NaN when the second epoch begins."""

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == 2:
            with torch.no_grad():
                next(net.module_.parameters()).fill_(float("nan"))


def test_fit_stops_when_the_loss_stops_being_finite(images):
    with pytest.raises(FloatingPointError, match="training loss became nan in epoch 2"):
        TransferCNNClassifier(**{**FAST, "max_epochs": 3, "callbacks": [_Poison()]}).fit(*images)


def test_rescale_and_pixels_that_cannot_be_hounsfield_units(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    hu = np.full((8, 8), 40)
    for slope in (0, float("nan"), float("inf")):
        path = write_dicom(tmp_path / f"slope-{slope}.dcm", hu)
        ds = pydicom.dcmread(path)
        ds.RescaleSlope = slope
        ds.save_as(path)
        with pytest.raises(ValueError, match=rf"slope-{slope}\.dcm.*Rescale Slope"):
            read_hu(path)
    path = write_dicom(tmp_path / "no-rescale.dcm", hu)
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(path)
    with pytest.warns(UserWarning, match=r"no-rescale\.dcm.*no Rescale Slope or Intercept"):
        read_hu(path)


def test_a_header_declaring_a_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    path = write_dicom(tmp_path / "bomb.dcm", np.zeros((8, 8)))
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 20000
    ds.save_as(path)
    with pytest.raises(ValueError, match=r"bomb\.dcm.*20000 x 20000 = 400,000,000 pixels.*SKCOVID_MAX_PIXELS"):
        read_hu(path)
    monkeypatch.setenv("SKCOVID_MAX_PIXELS", "32")
    with pytest.raises(ValueError, match=r"ok\.dcm.*8 x 8 = 64 pixels"):
        read_hu(write_dicom(tmp_path / "ok.dcm", np.zeros((8, 8))))


def test_a_deflated_file_is_refused_before_its_inflation_outgrows_the_pixel_limit(tmp_path, monkeypatch):
    """pydicom inflates a whole Deflated Explicit VR Little Endian dataset before any header can be checked."""
    pytest.importorskip("pydicom")
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    path = write_dicom(tmp_path / "bomb.dcm", np.zeros((1024, 1024), dtype=int),
                       transfer_syntax=DeflatedExplicitVRLittleEndian)
    assert path.stat().st_size < 20_000  # 2 MiB of pixels
    assert read_hu(path).shape == (1024, 1024)  # within the limit, it reads
    monkeypatch.setenv("SKCOVID_MAX_PIXELS", "4096")  # 16 KiB of pixels and 1 MiB of header may inflate
    with pytest.raises(ValueError, match=r"bomb\.dcm.*is deflated and inflates to more than 1,064,960 bytes.*"
                                         r"SKCOVID_MAX_PIXELS"):
        read_hu(path)
    monkeypatch.setattr("pydicom.dcmread", lambda *a, **k: pytest.fail("dcmread inflated it"))
    with pytest.raises(ValueError, match="inflates to more than"):
        read_hu(path)


def test_nifti_with_nan_voxels_is_refused(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = np.zeros((8, 8, 2), dtype=np.float32)
    volume[2, 3, 1] = np.nan
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "nan.nii.gz")
    read_hu(f"{tmp_path / 'nan.nii.gz'}#0")
    with pytest.raises(ValueError, match=r"nan\.nii\.gz#1.*not finite"):
        read_hu(f"{tmp_path / 'nan.nii.gz'}#1")


def test_the_command_line_turns_any_error_into_one_line(model_file, tmp_path, monkeypatch, capsys):
    import skcovid._cli.predict as predict

    def broken(args):
        raise KeyError("proba_COVID")

    monkeypatch.setattr(predict, "run", broken)
    assert main(["predict", str(model_file), str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["skcovid predict: error: KeyError: 'proba_COVID'"]
    with pytest.raises(KeyError):
        main(["predict", str(model_file), str(tmp_path), "--debug"])


@pytest.fixture(scope="module")
def onnx_file(fitted, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from skcovid import export

    return export(fitted, tmp_path_factory.mktemp("onnx") / "model.onnx")


def _with_metadata(source, target, text):
    import onnx

    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "skcovid":
            prop.value = text
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize("change, field", [
    ({"classes": ["a", "b", "c"]}, "3 classes but the network has 2 outputs"),
    ({"classes": ["COVID"]}, "2 to 1000 classes"),
    ({"input_units": "HU"}, "input_units"),
    ({"threshold": float("nan"), "pos_label": "COVID"}, "threshold"),
    ({"image_size": 40000}, "image_size"),
    ({"window": "os.system"}, "window"),
    ({"patient_aggregation": {"method": "os.system"}}, "patient_aggregation"),
])
def test_lying_onnx_metadata_is_refused_naming_the_file(onnx_file, tmp_path, change, field):
    import onnx

    from skcovid import load_onnx

    metadata = json.loads(next(p.value for p in onnx.load(str(onnx_file)).metadata_props if p.key == "skcovid"))
    crafted = _with_metadata(onnx_file, tmp_path / "crafted.onnx", json.dumps({**metadata, **change}))
    with pytest.raises(ValueError, match=rf"crafted\.onnx.*{field}"):
        load_onnx(crafted)


@pytest.mark.parametrize("text, what", [("{not json", "not JSON"), ("[1, 2]", "a list, not an object"),
                                        ('{"classes": ["a", "b"]}', "lacks")])
def test_onnx_metadata_that_is_not_an_object_or_lacks_keys(onnx_file, tmp_path, text, what):
    from skcovid import load_onnx

    with pytest.raises(ValueError, match=rf"bad\.onnx.*{what}"):
        load_onnx(_with_metadata(onnx_file, tmp_path / "bad.onnx", text))


@pytest.mark.parametrize("content, reason", [
    (b"", "it is empty"),
    (b"12345678", "neither a safetensors file"),
    ((2**63).to_bytes(8, "little") + b'{"a": 1}', "header is 9,223,372,036,854,775,808 bytes long"),
    (b"GIF89a" + bytes(50), "neither a safetensors file"),
])
def test_a_file_that_is_no_model_is_called_that_not_a_pickle(tmp_path, content, reason):
    path = tmp_path / "model.skcovid"
    path.write_bytes(content)
    for trusted in (False, True):
        with pytest.raises(ValueError, match=rf"model\.skcovid: .*{reason}") as info:
            load_model(path, trusted=trusted)
        assert "--trust-pickle" not in str(info.value)


def test_a_format_version_that_is_not_a_number(model_file, tmp_path):
    def edit(document, tensors):
        document["format_version"] = "1"

    with pytest.raises(ValueError, match=r"version\.skcovid.*format_version '1' is not a version number"):
        load_model(_rewrite(model_file, tmp_path / "version.skcovid", edit))


# --- property-based: random corruptions of valid files -------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
                     lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children,
                                                                                        max_size=3),
                     max_leaves=6)


@pytest.fixture
def bounded_memory():
    """The test may raise the process's peak memory by at most 1 GiB (a decompression bomb would not fit)."""
    import resource

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    before = peak_mib()
    yield
    assert peak_mib() - before < 1024


def _paths(value, path=()):
    """Every place in a JSON document: (path, value)."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, path + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, path + (i,))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_values_in_a_model_file_load_and_predict_or_are_refused(bounded_memory, model_file, images, tmp_path,
                                                                       data):
    document = json.loads(read_header(model_file.read_bytes())["__metadata__"]["skcovid"])
    places = [p for p, _ in _paths(document["estimator"]) if p]
    place = data.draw(st.sampled_from(places))
    value = data.draw(_JSON)

    def edit(document, tensors):
        target = document["estimator"]
        for key in place[:-1]:
            target = target[key]
        target[place[-1]] = value

    crafted = _rewrite(model_file, tmp_path / "random.skcovid", edit)
    try:
        model = load_model(crafted, runtime="torch")
    except ValueError as exc:
        assert "random.skcovid" in str(exc)
        return
    try:
        proba = model.predict_proba(images[0][:4])
    except ValueError:
        return  # refused by name (non-finite probabilities, images the model cannot read)
    assert np.all(np.isfinite(proba)) and proba.shape == (4, len(model.classes_))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                  max_size=4))
def test_corrupted_dicom_files_read_finite_or_are_refused_by_name(bounded_memory, tmp_path, cut,
                                                                 flips):
    pytest.importorskip("pydicom")
    path = write_dicom(tmp_path / "slice.dcm", np.arange(64).reshape(8, 8) - 1000)
    data = bytearray(path.read_bytes())
    for position, byte in flips:
        data[position % len(data)] = byte
    corrupted = tmp_path / "corrupted.dcm"
    corrupted.write_bytes(bytes(data[:max(1, len(data) - cut % len(data))]))
    try:
        hu = read_hu(corrupted)
    except ValueError as exc:
        assert "corrupted.dcm" in str(exc)
        return
    assert np.all(np.isfinite(hu)) and hu.ndim == 2


def test_the_checks_accept_what_skcovid_writes(images, tmp_path):
    """The default recipe's net stores its classes as an array, workers and class weights as settings."""
    from skcovid import recipe

    X, y = images
    for name, model in {
            "recipe": recipe("finetune", backbone="simple_cnn", weights=None, image_size=16, max_epochs=1,
                             head_epochs=1, validation_fraction=0.25, random_state=0),
            "options": TransferCNNClassifier(**{**FAST, "max_epochs": 1, "num_workers": 1, "class_weight": "balanced",
                                                "target_sensitivity": 0.9, "validation_fraction": 0.3})}.items():
        model.fit(X, y)
        loaded = load_model(save_model(model, tmp_path / f"{name}.skcovid"), runtime="torch")
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_predict_reads_a_flat_class_folder_of_several_series_as_evaluate_does(tmp_path, capsys):
    """Item 8: train and evaluate split loose DICOM files by patient; predict now does too."""
    pytest.importorskip("pydicom")
    from skcovid.datasets import load_dicom_folder

    (tmp_path / "data" / "COVID").mkdir(parents=True)
    for patient in range(2):
        for z in range(3):
            write_dicom(tmp_path / "data" / "COVID" / f"p{patient}_{z}.dcm", np.full((8, 8), 40 * patient), z=float(z),
                        series_uid=f"1.2.826.0.1.3680043.8.498.{10 + patient}", patient_id=f"PATIENT-{patient}")
    X, y, groups = load_dicom_folder(tmp_path / "data")
    model = save_model(TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(
        np.concatenate([X, X]), np.array(["COVID"] * 6 + ["non-COVID"] * 6, dtype=object)), tmp_path / "m.skcovid")
    assert main(["predict", str(model), str(tmp_path / "data" / "COVID")]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(row[0] for row in rows) == sorted(set(groups)) and all(row[3] == "3" for row in rows)
    assert not any("PATIENT" in row[0] for row in rows)  # salted keys, never the identifier


def test_pruning_carries_the_estimators_validation_split_forward(images, monkeypatch):
    """Item 7: with random_state=None the split used to be drawn again for the pruner and the refit."""
    import skcovid._estimators.pruned as pruned_module
    from skcovid import PrunedCNNClassifier
    from skcovid.pruning import StructuredPruner

    X, y = images
    splits = []
    original = pruned_module.fit_network

    def spy(*args, split=None, **kwargs):
        splits.append(split)
        return original(*args, split=split, **kwargs)

    monkeypatch.setattr(pruned_module, "fit_network", spy)
    monkeypatch.setattr(pruned_module, "validation_split", lambda *a, **k: pytest.fail("split drawn again"))
    base = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "random_state": None, "validation_fraction": 0.25,
                                    "calibration": "temperature"})
    clf = PrunedCNNClassifier(base, StructuredPruner(ratio=0.3), finetune_epochs=1).fit(X, y)
    held_out = clf.estimator_.validation_indices_
    assert len(held_out) == 6 and len(splits) == 1
    train, valid = splits[0]
    np.testing.assert_array_equal(valid, held_out)
    assert not set(train) & set(held_out)


def test_uncalibrated_probabilities_never_change_the_model(fitted, images, monkeypatch):
    """Item 7: raw_proba set temperature_ to 1 during its call, under any thread predicting meanwhile."""
    from sklearn.pipeline import make_pipeline

    from skcovid._decision.decide import scale
    from skcovid._decision.fit import raw_proba
    from skcovid._engine import inference

    X, _ = images
    temperature = fitted.temperature_
    assert temperature != 1.0
    seen = []
    original = inference.predict_proba

    def spy(*args, **kwargs):
        seen.append(fitted.temperature_)
        return original(*args, **kwargs)

    monkeypatch.setattr(inference, "predict_proba", spy)
    for model in (fitted, make_pipeline(fitted)):
        raw = raw_proba(model, X)
        np.testing.assert_allclose(scale(raw, temperature), fitted.predict_proba(X), atol=1e-12)
    assert seen and set(seen) == {temperature} and fitted.temperature_ == temperature


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_onnx_metadata_loads_and_predicts_or_is_refused(bounded_memory, onnx_file, images, tmp_path, data):
    import onnx

    from skcovid import load_onnx

    metadata = json.loads(next(p.value for p in onnx.load(str(onnx_file)).metadata_props if p.key == "skcovid"))
    key = data.draw(st.sampled_from(sorted(metadata)))
    crafted = _with_metadata(onnx_file, tmp_path / "random.onnx", json.dumps({**metadata, key: data.draw(_JSON)}))
    try:
        model = load_onnx(crafted)
    except ValueError as exc:
        assert "random.onnx" in str(exc)
        return
    try:
        proba = model.predict_proba(images[0][:4])
        labels = model.predict(images[0][:4])
    except ValueError:
        return
    assert np.all(np.isfinite(proba)) and len(labels) == 4


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4))
def test_corrupted_nifti_files_read_finite_or_are_refused_by_name(bounded_memory, tmp_path, cut,
                                                                 flips):
    nibabel = pytest.importorskip("nibabel")
    path = tmp_path / "volume.nii"
    nibabel.save(nibabel.Nifti1Image(np.arange(8 * 8 * 2, dtype=np.float32).reshape(8, 8, 2), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    for position, byte in flips:
        data[position % len(data)] = byte
    corrupted = tmp_path / "corrupted.nii"
    corrupted.write_bytes(bytes(data[:max(1, len(data) - cut % len(data))]))
    try:
        hu = read_hu(f"{corrupted}#0")
    except ValueError as exc:
        assert "corrupted.nii" in str(exc)
        return
    assert np.all(np.isfinite(hu)) and hu.ndim == 2


def test_a_nifti_volume_declaring_too_many_voxels_is_refused(tmp_path, monkeypatch):
    nibabel = pytest.importorskip("nibabel")
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 65), dtype=np.float32), np.eye(4)), tmp_path / "big.nii.gz")
    monkeypatch.setenv("SKCOVID_MAX_PIXELS", "32")
    with pytest.raises(ValueError, match=r"big\.nii\.gz.*8 x 8 = 64 pixels"):
        read_hu(f"{tmp_path / 'big.nii.gz'}#0")
    monkeypatch.setenv("SKCOVID_MAX_PIXELS", "64")  # each slice fits, 65 slices of 64 pixels do not
    with pytest.raises(ValueError, match=r"big\.nii\.gz.*volume of shape \(8, 8, 65\)"):
        read_hu(f"{tmp_path / 'big.nii.gz'}#0")


def test_a_network_without_its_fitted_classes_is_refused(model_file, tmp_path):
    """Found by the property test: a file whose fitted attributes were all removed predicted without classes."""
    def edit(document, tensors):
        document["estimator"]["attributes"] = {}

    with pytest.raises(ValueError, match=r"bare\.skcovid.*lacks \['classes_'\]"):
        load_model(_rewrite(model_file, tmp_path / "bare.skcovid", edit))
