"""Clinical CT in the estimators: windows, patients as groups, one diagnosis per patient, the command line."""

import os
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, cross_validate

from skcovid import PrunedCNNClassifier, TransferCNNClassifier, export
from skcovid._cli.main import main
from skcovid._engine.validation import validation_split  # private: the engine's split is what fit uses
from skcovid._imaging.window import apply_window  # private: the window arithmetic
from skcovid.datasets import load_dicom_folder
from skcovid.pruning import StructuredPruner
from skcovid.report import evaluate

from conftest import FAST, write_dicom

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")

SAMPLE = Path(os.environ.get("SKCOVID_COVID_CT_MD_DIR",
                             Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-ct-md-sample"))
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"COVID-CT-MD sample not found at {SAMPLE}")


@pytest.fixture(scope="module")
def patients(dicom_patients):
    return load_dicom_folder(dicom_patients)


def test_windows_map_hounsfield_units_to_intensities():
    hu = np.array([[-1350.0, -600.0, 150.0, 500.0]], dtype=np.float32)
    np.testing.assert_allclose(apply_window(hu, "lung", hu=True)[0, 0], [0, 0.5, 1, 1])
    np.testing.assert_allclose(apply_window(hu, (50, 350), hu=True)[0, 0], [0, 0, 275 / 350, 1])
    multi = apply_window(hu, "multi", hu=True)
    assert multi.shape == (3, 1, 4)
    np.testing.assert_allclose(multi[2, 0], np.clip((hu[0] + 1000) / 2000, 0, 1))
    # None reads HU through the lung window; raster intensities are left as they are.
    np.testing.assert_array_equal(apply_window(hu, None, hu=True), apply_window(hu, "lung", hu=True))
    gray = np.array([[0.2, 0.7]], dtype=np.float32)
    np.testing.assert_array_equal(apply_window(gray, "mediastinal", hu=False)[0], gray)
    np.testing.assert_array_equal(apply_window(gray, "multi", hu=False), np.stack([gray] * 3))


@pytest.mark.parametrize("window", ["bone", (-600,), (-600, 0), (-600, -5), ("a", 1)])
def test_bad_windows_are_refused(patients, window):
    X, y, _ = patients
    with pytest.raises(ValueError, match="window"):
        TransferCNNClassifier(**FAST, window=window).fit(X, y)


def _nifti_from_dicom(files, path):
    """A NIfTI volume of DICOM slices, as nibabel's DICOM conversion writes it (RAS affine)."""
    slices = [pydicom.dcmread(f) for f in files]
    first = slices[0]
    hu = [s.pixel_array.astype(np.float32) * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in slices]
    data = np.stack([h.T for h in hu], axis=-1)  # data[column, row, slice]
    row_cosine, col_cosine = (np.asarray(first.ImageOrientationPatient[i:i + 3], dtype=float) for i in (0, 3))
    spacing_row, spacing_col = (float(v) for v in first.PixelSpacing)
    positions = [np.asarray(s.ImagePositionPatient, dtype=float) for s in slices]
    step = positions[1] - positions[0] if len(positions) > 1 else np.cross(row_cosine, col_cosine)
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * spacing_col
    affine[:3, 1] = col_cosine * spacing_row
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    affine = np.diag([-1, -1, 1, 1]) @ affine  # LPS -> RAS
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    return [f"{path}#{k}" for k in range(len(files))]


@needs_sample
@pytest.mark.parametrize("window", [None, "multi"])
def test_same_hounsfield_units_in_every_format_give_the_same_probabilities(tmp_path, window):
    """Compressed DICOM, uncompressed DICOM, signed DICOM with intercept 0 and NIfTI: one prediction."""
    compressed = sorted((SAMPLE / "COVID-19" / "P001").glob("*.dcm"))[:3]
    uncompressed, signed = [], []
    for i, path in enumerate(compressed):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        ds.decompress()
        ds.save_as(tmp_path / f"plain{i}.dcm")
        uncompressed.append(str(tmp_path / f"plain{i}.dcm"))
        ds.PixelRepresentation, ds.RescaleIntercept = 1, 0
        ds.PixelData = hu.astype(np.int16).tobytes()
        ds.save_as(tmp_path / f"signed{i}.dcm")
        signed.append(str(tmp_path / f"signed{i}.dcm"))
    assert pydicom.dcmread(compressed[0]).file_meta.TransferSyntaxUID.is_compressed
    volume = _nifti_from_dicom(compressed, tmp_path / "volume.nii.gz")
    X, y, _ = load_dicom_folder(SAMPLE)
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "image_size": 32}, window=window).fit(X, y)
    reference = clf.predict_proba([str(p) for p in compressed])
    for variant in (uncompressed, signed, volume):
        np.testing.assert_array_equal(clf.predict_proba(variant), reference)


def test_validation_split_never_puts_a_patient_on_both_sides():
    rng = np.random.RandomState(0)
    groups = np.repeat([f"p{i}" for i in range(40)], 5)
    y = np.repeat(np.arange(40) % 2, 5)
    for seed in range(5):
        train, valid = validation_split(y, 0.2, np.random.RandomState(seed), groups)
        assert not set(groups[train]) & set(groups[valid])
        assert set(y[valid]) == {0, 1} and len(train) + len(valid) == len(y)
    rng.shuffle(groups)  # patients whose slices carry two labels still stay on one side
    train, valid = validation_split(y, 0.2, np.random.RandomState(0), groups)
    assert not set(groups[train]) & set(groups[valid])


def test_fit_splits_by_patient(patients, monkeypatch):
    X, y, groups = patients
    seen = {}
    original = validation_split

    def spy(y, fraction, rng, groups=None):
        train, valid = original(y, fraction, rng, groups)
        seen["sides"] = (set(groups[train]), set(groups[valid]))
        return train, valid

    monkeypatch.setattr("skcovid._engine.fit.validation_split", spy)
    TransferCNNClassifier(**{**FAST, "max_epochs": 1, "validation_fraction": 0.25}).fit(X, y, groups=groups)
    train, valid = seen["sides"]
    assert train and valid and not train & valid


def test_metadata_routing_sends_patients_to_the_folds_and_to_fit(patients, monkeypatch):
    X, y, groups = patients
    fits = []
    original = TransferCNNClassifier.fit

    def recording_fit(self, X, y, groups=None):
        fits.append(None if groups is None else set(groups))
        return original(self, X, y, groups=groups)

    monkeypatch.setattr(TransferCNNClassifier, "fit", recording_fit)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).set_fit_request(groups=True)
        cv = StratifiedGroupKFold(2)
        cross_validate(clf, X, y, cv=cv, params={"groups": groups})
        folds = list(cv.split(X, y, groups))
    assert [f for f in fits] == [set(groups[train]) for train, _ in folds]


def test_grid_search_over_patient_aggregation_scores_patients(patients):
    X, y, groups = patients
    with sklearn.config_context(enable_metadata_routing=True):
        clf = (TransferCNNClassifier(**{**FAST, "max_epochs": 3})
               .set_fit_request(groups=True).set_score_request(groups=True))
        search = GridSearchCV(clf, {"patient_aggregation": ["mean", "max", "topk", "fraction"]},
                              cv=StratifiedGroupKFold(2)).fit(X, y, groups=groups)
    assert len(search.cv_results_["mean_test_score"]) == 4
    # Each fold's test set has 4 patients: a patient-level accuracy is a multiple of 1/4.
    scores = search.cv_results_["split0_test_score"]
    np.testing.assert_allclose(scores * 4, np.round(scores * 4))


def test_patient_aggregations_by_hand(patients):
    X, y, groups = patients
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2}).fit(X, y)
    proba = clf.predict_proba(X)
    covid = list(clf.classes_).index("COVID")
    for method in ("mean", "max", "topk", "fraction"):
        clf.set_params(patient_aggregation=method, patient_top_k=2, patient_threshold=0.5)
        ids, patient_proba = clf.predict_patients(X, groups)
        assert list(ids) == sorted(set(groups))
        np.testing.assert_allclose(patient_proba.sum(axis=1), 1)
        for patient, row in zip(ids, patient_proba):
            mine = proba[groups == patient]
            suspicious = mine[np.argsort(-mine[:, covid], kind="stable")]
            votes = np.where(mine[:, covid] >= 0.5, covid, 1 - covid)
            expected = {"mean": mine.mean(axis=0), "max": suspicious[0], "topk": suspicious[:2].mean(axis=0),
                        "fraction": np.bincount(votes, minlength=2) / len(mine)}[method]
            np.testing.assert_allclose(row, expected)
    labels = {p: y[groups == p][0] for p in ids}
    predicted = clf.classes_[patient_proba.argmax(axis=1)]
    assert clf.score(X, y, groups=groups) == np.mean([labels[p] == c for p, c in zip(ids, predicted)])


def test_patients_with_two_labels_are_refused(patients):
    X, y, groups = patients
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    mixed = groups.copy()
    mixed[:] = "P"
    with pytest.raises(ValueError, match="Patient 'P' has slices labelled"):
        clf.score(X, y, groups=mixed)


def test_report_gives_both_levels_with_patient_resampling(patients):
    X, y, groups = patients
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 3}).fit(X, y, groups=groups)
    report = evaluate(clf, X, y, groups=groups, n_bootstraps=200)
    assert report.patients is not None and len(report.patients.y_true) == 8
    text = report.summary()
    assert "slice level: 32 slices" in text and "patient level: 8 patients" in text
    saved = report.to_dict()
    assert saved["patients"]["n_samples"] == 8 and saved["level"] == "slice"
    # Resampling whole patients of 4 slices: every resampled slice accuracy is a multiple of 1/32
    # and the interval is wider than one that resamples the 32 slices independently.
    alone = evaluate(clf, X, y, n_bootstraps=200)
    width = report.metrics["accuracy"]["ci_high"] - report.metrics["accuracy"]["ci_low"]
    assert width >= alone.metrics["accuracy"]["ci_high"] - alone.metrics["accuracy"]["ci_low"]


def test_pruned_classifier_takes_groups_and_predicts_patients(patients):
    X, y, groups = patients
    clf = PrunedCNNClassifier(TransferCNNClassifier(**{**FAST, "max_epochs": 2}, window="multi"),
                              StructuredPruner(ratio=0.25), finetune_epochs=1).fit(X, y, groups=groups)
    assert clf.n_params_ < clf.n_params_before_
    ids, proba = clf.predict_patients(X, groups)
    assert len(ids) == 8 and proba.shape == (8, 2)


def test_exported_model_windows_hounsfield_units_inside(patients, tmp_path):
    torch = pytest.importorskip("torch")
    X, y, _ = patients
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}, window="multi").fit(X, y)
    path = export(clf, tmp_path / "model.pt")
    loaded = torch.jit.load(str(path))
    hu = np.stack([pydicom.dcmread(f).pixel_array.astype(np.float32) - 1024 for f in X[:4]])
    out = loaded(torch.from_numpy(hu)[:, None]).detach().numpy()
    np.testing.assert_allclose(out, clf.predict_proba(X[:4]), atol=1e-5)


def test_command_line_splits_by_patient_and_predicts_one_row_per_patient(dicom_patients, tmp_path, capsys):
    model = tmp_path / "model.joblib"
    assert main(["train", str(dicom_patients), "--out", str(model), "--recipe", "frozen",
                 "--backbone", "simple_cnn", "--weights",
                 "none", "--freeze", "none", "--image-size", "16", "--epochs", "2", "--window", "lung",
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert "patient level" in out
    assert main(["train", str(dicom_patients), "--out", str(model), "--recipe", "frozen",
                 "--backbone", "simple_cnn", "--weights",
                 "none", "--freeze", "none", "--image-size", "16", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "split by patient: training on 24 slices of 6 patients, holding out 8 slices of 2 patients" in out
    series = dicom_patients / "COVID" / "C00"
    csv_path = tmp_path / "slices.csv"
    assert main(["predict", str(model), str(series), "--csv", str(csv_path), "-q"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[-2].split("\t") == ["patient", "label", "probability", "slices"]
    patient, label, probability, slices = rows[-1].split("\t")
    assert patient == "C00" and label in ("COVID", "normal") and slices == "4" and 0.5 <= float(probability) <= 1
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("path,patient,label") and len(lines) == 5
    # The slices are listed in anatomical order (by position), not by file name.
    z = [float(pydicom.dcmread(line.split(",")[0]).ImagePositionPatient[2]) for line in lines[1:]]
    assert z == sorted(z)
    assert main(["evaluate", str(model), str(dicom_patients), "--n-bootstraps", "50", "--report",
                 str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "slice level: 32 slices" in out and "patient level: 8 patients" in out
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "report").iterdir() if p.suffix in
                      (".json", ".html")) + out + csv_path.read_text()
    for identifying in ("Doe", "Jane", "19700101", "ID-COVID"):
        assert identifying not in written


def test_group_by_patient_needs_patients(image_folder, tmp_path, capsys):
    X, _ = image_folder
    root = Path(X[0]).parents[1]
    assert main(["train", str(root), "--out", str(tmp_path / "m.joblib"), "--group-by", "patient"]) == 1
    assert "--group-by patient needs patients" in capsys.readouterr().err


@needs_sample
def test_command_line_on_the_covid_ct_md_sample(tmp_path, capsys):
    model = tmp_path / "model.joblib"
    assert main(["train", str(SAMPLE), "--out", str(model), "--recipe", "frozen",
                 "--backbone", "simple_cnn", "--weights", "none",
                 "--freeze", "none", "--image-size", "32", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "split by patient" in out and "holding out 30 slices of 3 patients" in out
    assert main(["predict", str(model), str(SAMPLE / "COVID-19" / "P001")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[-1].split("\t")[0] == "P001" and rows[-1].split("\t")[3] == "10"
    assert len(rows) == 2


def test_fit_with_groups_resumes_only_with_the_same_patients(patients, tmp_path):
    X, y, groups = patients
    params = {**FAST, "max_epochs": 2, "checkpoint_dir": str(tmp_path), "warm_start": True,
              "validation_fraction": 0.25, "early_stopping": None}
    TransferCNNClassifier(**params).fit(X, y, groups=groups)
    other = groups.copy()
    other[:4] = "someone else"
    with pytest.raises(ValueError, match="checkpoint"):
        TransferCNNClassifier(**params).fit(X, y, groups=other)


def test_dicom_writer_round_trip(tmp_path):
    hu = np.arange(-1024, -1024 + 64).reshape(8, 8)
    from skcovid._imaging.medical import read_hu  # private: the reader

    for signed in (False, True):
        path = write_dicom(tmp_path / f"s{signed}.dcm", hu, signed=signed)
        np.testing.assert_array_equal(read_hu(str(path)), hu)


def test_bad_series_fail_before_anything_is_written(dicom_patients, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(dicom_patients, root)
    write_dicom(root / "COVID" / "C00" / "stray.dcm", np.full((24, 24), -800), series_uid="1.2.3.4.5")
    model = tmp_path / "model.joblib"
    assert main(["train", str(root), "--out", str(model), "--recipe", "frozen",
                 "--backbone", "simple_cnn", "--weights", "none",
                 "--image-size", "16", "--epochs", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "mixes 2 DICOM series" in err and "C00" in err
    assert list(tmp_path.iterdir()) == [root]  # no model, no temporary file


def test_a_dicom_object_that_is_not_an_image_is_named_in_fit(patients, tmp_path):
    X, y, _ = patients
    sr = pydicom.dcmread(X[0])
    sr.Modality = "SR"
    del sr.PixelData
    sr.save_as(tmp_path / "report.dcm")
    with pytest.raises(ValueError, match="report.dcm"):
        TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit([*X[:-1], str(tmp_path / "report.dcm")], y)


def test_command_line_cross_validates_by_patient(dicom_patients, tmp_path, capsys, monkeypatch):
    seen = []
    original = TransferCNNClassifier.fit

    def recording_fit(self, X, y, groups=None):
        seen.append(None if groups is None else len(set(groups)))
        return original(self, X, y, groups=groups)

    monkeypatch.setattr(TransferCNNClassifier, "fit", recording_fit)
    assert main(["train", str(dicom_patients), "--out", str(tmp_path / "m.joblib"), "--cv", "2", "--recipe", "frozen",
                 "--backbone", "simple_cnn", "--weights", "none", "--freeze", "none", "--image-size", "16",
                 "--epochs", "1"]) == 0
    assert "2-fold stratified cross-validation by patient" in capsys.readouterr().out
    assert seen == [4, 4, 8]  # each fold's fit gets its training patients; the refit gets all of them
