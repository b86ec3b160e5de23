"""Inputs from several hospitals: several sources in one fit, the lung-field crop, harmonised intensities."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skcovid import TransferCNNClassifier, export, load_onnx
from skcovid._cli.main import main
from skcovid._imaging.crop import crop_box, crop_image
from skcovid._imaging.intensity import LUNG_WINDOW, harmonise
from skcovid.datasets import load_sources
from skcovid.metrics import scores_by_group

from conftest import FAST

FAST_ARGS = ["--recipe", "frozen", "--backbone", "simple_cnn", "--weights", "none", "--freeze", "none",
             "--image-size", "16", "--epochs", "2", "--lr", "0.01", "--batch-size", "8",
             "--early-stopping", "none", "--validation-fraction", "none", "-q"]


def phantom_hu(size=96, lungs=True, covid=False):
    """An axial slice in HU: air, a body of soft tissue and fat, two lungs (ground glass in one when ``covid``)."""
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    rows, cols = np.ogrid[:size, :size]
    c = size / 2
    hu[((rows - c) / (0.38 * size)) ** 2 + ((cols - c) / (0.45 * size)) ** 2 <= 1] = -100.0  # fat
    hu[((rows - c) / (0.34 * size)) ** 2 + ((cols - c) / (0.41 * size)) ** 2 <= 1] = 40.0  # muscle, organs
    if lungs:
        for centre in (0.3 * size, 0.7 * size):
            hu[((rows - c) / (0.25 * size)) ** 2 + ((cols - centre) / (0.13 * size)) ** 2 <= 1] = -860.0
        if covid:
            hu[((rows - c) / (0.08 * size)) ** 2 + ((cols - 0.3 * size) / (0.06 * size)) ** 2 <= 1] = -500.0
    return hu


def display(hu, low, high, gamma=1.0):
    """An 8-bit export of ``hu`` through the window ``[low, high]``, as a PACS or a paper writes it."""
    gray = np.clip((hu - low) / (high - low), 0, 1) ** gamma
    return np.round(gray * 255).astype(np.uint8)


def test_crop_lungs_keeps_the_lung_fields_and_falls_back_to_the_body():
    hu = phantom_hu(96)
    rows, cols, found = crop_box(hu, "lungs", hu=True)
    body_rows, body_cols, _ = crop_box(hu, "body", hu=True)
    assert found
    # Both lungs (rows 24-72, columns 16-80) with a margin, inside the body's box.
    assert rows.start <= 24 and rows.stop >= 72 and cols.start <= 17 and cols.stop >= 79
    assert rows.stop - rows.start < body_rows.stop - body_rows.start
    # A slice below the lungs: the body's box, and the caller hears that the lungs were missed.
    missed = []
    no_lungs = phantom_hu(96, lungs=False)
    cropped = crop_image(no_lungs, "lungs", hu=True, missed=lambda: missed.append(1))
    assert missed == [1]
    assert cropped.shape == crop_image(no_lungs, "body", hu=True).shape
    # On grey levels too (Otsu's threshold instead of -500 HU).
    assert crop_box(display(hu, -1350, 150) / 255.0, "lungs", hu=False)[2]


@pytest.mark.parametrize("window", [(-1000, 400), (-1024, 3071), (-1200, 600)])
@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_intensity_auto_maps_exports_of_one_slice_back_to_the_lung_window(window, gamma):
    hu = phantom_hu(96, covid=True)
    reference = harmonise(display(hu, *LUNG_WINDOW) / 255.0, "auto")
    exported = harmonise(display(hu, *window, gamma=gamma) / 255.0, "auto")
    # What the grey levels say without harmonisation, against what they say with it.
    raw_gap = np.median(np.abs(display(hu, *window, gamma=gamma) / 255.0 - display(hu, *LUNG_WINDOW) / 255.0))
    gap = np.median(np.abs(exported - reference))
    # A linear export comes back to the lung window; a gamma bends what lies outside the two landmarks.
    assert gap < 0.02 < raw_gap if gamma == 1.0 else gap < raw_gap / 2
    # The ground glass keeps its contrast against the lung around it.
    assert exported[48, 29] - exported[48, 20] > 0.15


def test_intensity_auto_leaves_what_it_cannot_read_alone():
    flat = np.full((32, 32), 0.5, dtype=np.float32)
    np.testing.assert_array_equal(harmonise(flat, "auto"), flat)
    # A mediastinal window erased the lungs' contrast with the air: the slice is kept as it is.
    mediastinal = display(phantom_hu(96), -125, 225) / 255.0
    np.testing.assert_array_equal(harmonise(mediastinal, "auto"), mediastinal.astype(np.float32))


def test_intensity_is_a_parameter_torch_and_onnx_apply_to_raster_slices_only(tmp_path, dicom_patients):
    X, y = [], []
    for k in range(6):
        for label, covid in (("COVID", True), ("non-COVID", False)):
            path = tmp_path / f"{label}_{k}.png"
            Image.fromarray(display(phantom_hu(64, covid=covid), -1024, 3071)).save(path)
            X.append(str(path))
            y.append(label)
    X, y = np.array(X, dtype=object), np.array(y, dtype=object)
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "crop": "lungs", "intensity": "auto"}).fit(X, y)
    assert clf.crop_missed_ == 0
    proba = clf.predict_proba(X)
    assert not np.allclose(proba, clf.set_params(intensity=None).predict_proba(X), atol=1e-4)
    clf.set_params(intensity="auto")
    onnx_model = load_onnx(export(clf, tmp_path / "m.onnx"))
    assert onnx_model.intensity == "auto"
    np.testing.assert_allclose(onnx_model.predict_proba(X), proba, atol=1e-4)
    # DICOM slices keep their exact HU path: the parameter does not touch them.
    files = sorted(str(f) for f in Path(dicom_patients).rglob("*.dcm"))[:4]
    np.testing.assert_allclose(clf.predict_proba(files), clf.set_params(intensity=None).predict_proba(files))
    with pytest.raises(ValueError, match="intensity"):
        TransferCNNClassifier(intensity="histogram").fit(X, y)


def _three_sources(root):
    """Three hospitals' class folders: two with patient folders, one of loose slices."""
    paths = []
    for s, (name, patients) in enumerate([("hospital_a", True), ("hospital_b", True), ("public", False)]):
        for label, covid in (("COVID", True), ("non-COVID", False)):
            for p in range(3):
                folder = root / name / label / (f"{label[0]}{p}" if patients else "")
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(3):
                    hu = phantom_hu(48, covid=covid) + 40 * s + 5 * k
                    Image.fromarray(display(hu, -1350 + 100 * s, 150)).save(folder / f"{label}_{p}_{k}.png")
        paths.append(root / name)
    return paths


def test_load_sources_names_each_slices_source_and_patient(tmp_path):
    paths = _three_sources(tmp_path)
    X, y, sources, patients = load_sources(paths)
    assert len(X) == 54 and set(y) == {"COVID", "non-COVID"}
    assert sources.tolist() == ["hospital_a"] * 18 + ["hospital_b"] * 18 + ["public"] * 18
    assert patients[0] == "hospital_a/C0" and patients[18] == "hospital_b/C0"
    assert patients[36] == X[36]  # a loose slice is its own group
    (tmp_path / "other" / "COVID-19").mkdir(parents=True)
    Image.fromarray(display(phantom_hu(48), -1350, 150)).save(tmp_path / "other" / "COVID-19" / "a.png")
    with pytest.raises(ValueError, match="class folders differ"):
        load_sources([paths[0], tmp_path / "other"])
    with pytest.raises(ValueError, match="given twice"):
        load_sources([paths[0], paths[0]])


def test_scores_by_group_scores_each_source_alone():
    y = np.array(["COVID", "non-COVID"] * 4, dtype=object)
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.2, 0.8])
    groups = np.array(["a"] * 4 + ["b"] * 4)
    scores = scores_by_group(y, np.column_stack([p, 1 - p]), ["COVID", "non-COVID"], groups)
    assert scores["a"]["roc_auc"] == 1.0 and scores["b"]["roc_auc"] == 0.0 and scores["a"]["n"] == 4


def test_train_on_several_sources_reports_each_and_leaves_each_out(tmp_path, capsys):
    paths = _three_sources(tmp_path / "data")
    out = tmp_path / "m.skcovid"
    assert main(["train", *paths, "--out", out, "--cv", "sources", *FAST_ARGS]) == 0
    text = capsys.readouterr().out
    assert "out-of-fold metrics by source" in text
    for name in ("hospital_a (18 slices)", "hospital_b (18 slices)", "public (18 slices)"):
        assert name in text
    assert out.is_file()
    # Held out: each source's patients stay on one side, and the held-out metrics come per source too.
    assert main(["train", *paths, "--out", out, "--test-size", "0.34", *FAST_ARGS, "--crop", "lungs",
                 "--intensity", "auto"]) == 0
    text = capsys.readouterr().out
    assert "held-out metrics by source:" in text
    assert "lungs not found in 0 training slices" in text
    # One folder cannot be left out against the others.
    assert main(["train", paths[0], "--out", out, "--cv", "sources", *FAST_ARGS]) == 1
    assert "two DATA_DIR folders or more" in capsys.readouterr().err


def test_held_out_split_keeps_each_sources_patients_on_one_side(tmp_path):
    from argparse import Namespace

    from skcovid._cli.data import held_out_split, load_folders, split_units

    paths = _three_sources(tmp_path)
    X, y, groups, has_patients, sources = load_folders([str(p) for p in paths])
    args = Namespace(test_size=0.34, random_state=0, split="blocked", block_size=3)
    units, unit = split_units(args, X, y, groups, sources)
    train, test, _ = held_out_split(args, y, units, unit, sources)
    assert not set(units[train]) & set(units[test])
    # Every source, and each of its classes, on both sides.
    for part in (train, test):
        assert {(s, label) for s, label in zip(sources[part], y[part])} == set(zip(sources, y))
    # Same-named patient folders of two hospitals are two patients.
    assert "hospital_a/C0" in set(units) and "hospital_b/C0" in set(units)
    # Blocks of the loose slices never span two sources.
    blocks, _ = split_units(args, X, y, None, sources)
    for block in set(blocks):
        assert len(set(sources[blocks == block])) == 1


REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
#: The default moved by 0.009 (median) and 0.090 (maximum) on 2026-12-05: the goals are 0.02 and 0.10,
#: the maximum gets a little room for other BLAS builds.
MEDIAN_BOUND, MAX_BOUND = 0.02, 0.12


@pytest.mark.slow
def test_crop_lungs_finds_the_lungs_on_real_slices_of_two_sources():
    from skcovid._imaging.medical import read_hu
    from skcovid._imaging.raster import read_gray
    from skcovid.datasets import load_dicom_folder, load_image_folder

    dicom, sars = REAL / "covid-ct-md-sample", REAL / "sarscov2-ctscan"
    if not (dicom.is_dir() and sars.is_dir()):
        pytest.skip("the real data sets are not here")
    files, _, _ = load_dicom_folder(dicom)
    X, _ = load_image_folder(sars, check_images=False)
    for images, hu in (([read_hu(f) for f in files], True), ([read_gray(f) for f in X[::50]], False)):
        boxes = [crop_box(image, "lungs", hu=hu) for image in images]
        assert np.mean([found for _, _, found in boxes]) > 0.9
        if not hu:
            continue  # the screenshots are cut tight around the lungs already
        # On the DICOM slices, smaller than the body's box on most slices.
        body = [crop_box(image, "body", hu=hu) for image in images]
        areas = [((r.stop - r.start) * (c.stop - c.start), (br.stop - br.start) * (bc.stop - bc.start))
                 for (r, c, _), (br, bc, _) in zip(boxes, body)]
        assert np.mean([lung < whole for lung, whole in areas]) > 0.5


def test_ct_robust_augmentation_varies_the_display_and_keeps_the_range():
    import torch

    from skcovid._engine.data import make_augmentation

    transform = make_augmentation("ct-robust")
    x = torch.from_numpy((display(phantom_hu(64), *LUNG_WINDOW) / 255.0).astype(np.float32))[None]
    torch.manual_seed(0)
    views = torch.stack([transform(x) for _ in range(8)])
    assert views.shape == (8, 1, 64, 64) and views.dtype == torch.float32
    assert 0 <= views.min() and views.max() <= 1
    assert views.mean(dim=(1, 2, 3)).std() > 0.01  # not one look
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "augment": "ct-robust"})
    X = np.stack([display(phantom_hu(32, covid=k % 2 == 0), *LUNG_WINDOW) for k in range(8)])
    clf.fit(X, ["COVID", "non-COVID"] * 4)
    assert clf.predict_proba(X).shape == (8, 2)


@pytest.mark.slow
def test_the_default_answers_alike_for_exports_that_keep_the_lungs(tmp_path):
    """The bound of docs/benchmarks.md's invariance table, on real DICOM slices of another hospital.

    The default recipe, trained on the shipped sample (SARS-CoV-2 screenshots), predicts 20 COVID-CT-MD slices
    written as the lung window's PNG and as min-max over their whole HU range (washed out).
    """
    from skcovid import load_model, save_model
    from skcovid._imaging.medical import read_hu
    from skcovid.datasets import load_dicom_folder, load_sample_ct

    dicom = REAL / "covid-ct-md-sample"
    if not dicom.is_dir():
        pytest.skip("the COVID-CT-MD sample is not here")
    files, _, _ = load_dicom_folder(dicom)
    exports = {"lung": [], "whole": []}
    for i, path in enumerate(files[::3]):
        hu = read_hu(path)
        for name, gray in (("lung", np.clip((hu + 1350) / 1500, 0, 1)),
                           ("whole", (hu - hu.min()) / max(float(hu.max() - hu.min()), 1.0))):
            target = tmp_path / f"{name}_{i}.png"
            Image.fromarray((gray * 255).astype(np.uint8)).save(target)
            exports[name].append(str(target))
    X, y = load_sample_ct()
    model = load_model(save_model(TransferCNNClassifier(random_state=0).fit(X, y), tmp_path / "m.skcovid"),
                       cache_dir=tmp_path / "cache")
    lung, whole = (model.predict_proba(exports[name])[:, 0] for name in ("lung", "whole"))
    diff = np.abs(lung - whole)
    assert np.median(diff) <= MEDIAN_BOUND and diff.max() <= MAX_BOUND, (np.median(diff), diff.max())
