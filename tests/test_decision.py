"""Temperature scaling, a threshold for a target sensitivity, and scikit-learn's calibration and thresholds."""

import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import FixedThresholdClassifier, TunedThresholdClassifierCV
from sklearn.utils import check_random_state

from skcovid import TransferCNNClassifier, load_model, save_model
from skcovid._decision.decide import scale
from skcovid._decision.fit import fit_temperature
from skcovid._engine.validation import validation_split
from skcovid.metrics import sensitivity_score

from conftest import FAST

DECIDING = {**FAST, "max_epochs": 4, "validation_fraction": 0.25}


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_fit_temperature_recovers_the_temperature_of_the_labels():
    rng = np.random.RandomState(0)
    logits = rng.normal(scale=3.0, size=(20000, 3))
    y = np.array([rng.choice(3, p=p) for p in _softmax(logits / 2.0)])  # labels drawn at T = 2
    temperature = fit_temperature(_softmax(logits), y)
    assert temperature == pytest.approx(2.0, rel=0.05)
    np.testing.assert_allclose(scale(_softmax(logits), 2.0), _softmax(logits / 2.0), atol=1e-12)


@pytest.mark.parametrize("correct, bound", [(0.5, 20.0), (1.0, 0.05)])
def test_a_temperature_at_the_bound_of_its_search_warns(correct, bound):
    # Confident and right half the time: only T -> infinity fits; always right and unsure: T -> 0.
    confidence = 0.99 if correct == 0.5 else 0.6
    proba = np.tile([confidence, 1 - confidence], (40, 1))
    y = np.where(np.arange(40) < 40 * correct, 0, 1)
    with pytest.warns(UserWarning, match=r"40 validation images reached the bound .* too few"):
        temperature = fit_temperature(proba, y)
    assert temperature == pytest.approx(bound, rel=0.02)


def test_a_temperature_inside_its_search_does_not_warn():
    rng = np.random.RandomState(0)
    logits = rng.normal(scale=3.0, size=(200, 2))
    y = np.array([rng.choice(2, p=p) for p in _softmax(logits / 2.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_temperature(_softmax(logits), y)


@pytest.fixture(scope="module")
def calibrated(image_folder):
    X, y = image_folder
    return TransferCNNClassifier(**{**DECIDING, "calibration": "temperature"}).fit(X, y)


def test_temperature_scales_probabilities_not_the_ranking(calibrated, image_folder):
    X, y = image_folder
    proba = calibrated.predict_proba(X)
    assert calibrated.threshold_ is None and calibrated.temperature_ != 1.0
    temperature = calibrated.temperature_
    calibrated.temperature_ = 1.0
    try:
        raw = calibrated.predict_proba(X)
    finally:
        calibrated.temperature_ = temperature
    np.testing.assert_allclose(proba, scale(raw, temperature), atol=1e-12)
    np.testing.assert_array_equal(proba.argmax(axis=1), raw.argmax(axis=1))
    is_covid = np.asarray(y) == "COVID"
    assert roc_auc_score(is_covid, proba[:, 0]) == pytest.approx(roc_auc_score(is_covid, raw[:, 0]))


def test_report_shows_the_temperature_of_a_calibrated_model_only(calibrated, image_folder, tmp_path):
    from skcovid.report import evaluate

    X, y = image_folder
    report = evaluate(calibrated, X, y, n_bootstraps=0)
    assert report.temperature == calibrated.temperature_
    assert report.to_dict()["calibration"]["temperature"] == calibrated.temperature_
    assert f"Temperature: {calibrated.temperature_:.4f}" in report.summary()
    report.save(tmp_path)
    assert f"its temperature, {calibrated.temperature_:.4f}" in (tmp_path / "index.html").read_text()
    # The patients' probabilities come from the scaled slices: their report says so too.
    groups = np.arange(len(y)) // 2
    by_patient = evaluate(calibrated, X, y, groups=groups, n_bootstraps=0).to_dict()
    assert by_patient["patients"]["calibration"]["temperature"] == calibrated.temperature_
    uncalibrated = TransferCNNClassifier(**{**DECIDING, "max_epochs": 1}).fit(X, y)
    report = evaluate(uncalibrated, X, y, n_bootstraps=0)
    assert report.temperature is None and "Temperature" not in report.summary()


def test_target_sensitivity_sets_a_threshold_that_predict_uses(image_folder, tmp_path):
    X, y = image_folder
    clf = TransferCNNClassifier(**DECIDING, target_sensitivity=1.0).fit(X, y)
    assert clf.pos_label_ == "COVID" and 0 <= clf.threshold_ <= 1 and clf.temperature_ == 1.0
    proba = clf.predict_proba(X)
    expected = np.where(proba[:, 0] >= clf.threshold_, "COVID", "non-COVID")
    np.testing.assert_array_equal(clf.predict(X), expected)
    # Sensitivity 1 on the validation split, at the highest such threshold: the lowest
    # P(COVID) of a validation COVID slice (the split fit_network drew from the same seed).
    _, valid = validation_split(np.asarray(y), 0.25, check_random_state(0))
    covid = valid[np.asarray(y)[valid] == "COVID"]
    assert clf.threshold_ == pytest.approx(proba[covid, 0].min())
    assert sensitivity_score(np.asarray(y)[valid], clf.predict(X[valid]), pos_label="COVID") == 1.0
    # Saved and loaded, and exported, the threshold still decides.
    loaded = load_model(save_model(clf, tmp_path / "m.skcovid"), runtime="torch")
    assert loaded.threshold_ == clf.threshold_
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_decision_needs_a_validation_split_and_two_classes(image_folder):
    X, y = image_folder
    with pytest.raises(ValueError, match="calibration='temperature' is fitted on the validation split"):
        TransferCNNClassifier(**{**FAST, "calibration": "temperature"}).fit(X, y)
    three = np.array(["a", "b", "c"] * (len(y) // 3))
    with pytest.raises(ValueError, match="target_sensitivity needs two classes"):
        TransferCNNClassifier(**DECIDING, target_sensitivity=0.9).fit(X[:len(three)], three)
    with pytest.raises(ValueError, match="target_sensitivity"):
        TransferCNNClassifier(**DECIDING, target_sensitivity=1.5).fit(X, y)


def test_scikit_learn_calibration_and_thresholds_with_string_labels(image_folder):
    X, y = image_folder
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 3})
    calibrated = CalibratedClassifierCV(clf, cv=2, method="sigmoid").fit(X, y)
    assert calibrated.predict_proba(X).shape == (len(X), 2) and set(calibrated.predict(X)) <= set(y)
    # scikit-learn's own temperature, fitted on out-of-fold probabilities, then one refit on everything.
    tempered = CalibratedClassifierCV(clf, cv=2, method="temperature", ensemble=False).fit(X, y)
    assert len(tempered.calibrated_classifiers_) == 1 and tempered.predict_proba(X).shape == (len(X), 2)
    fixed = FixedThresholdClassifier(clf, threshold=0.2, pos_label="COVID").fit(X, y)
    proba = fixed.estimator_.predict_proba(X)[:, 0]
    np.testing.assert_array_equal(fixed.predict(X), np.where(proba >= 0.2, "COVID", "non-COVID"))
    tuned = TunedThresholdClassifierCV(clf, scoring="balanced_accuracy", cv=2, random_state=0).fit(X, y)
    assert 0 <= tuned.best_threshold_ <= 1 and set(tuned.predict(X)) <= set(y)


def test_pruning_refits_the_decision_and_exports_carry_it(calibrated, image_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from skcovid import PrunedCNNClassifier, export, load_onnx
    from skcovid.pruning import StructuredPruner

    X, y = image_folder
    calibrated_threshold = calibrated.set_params(target_sensitivity=0.9)
    try:
        pruned = PrunedCNNClassifier(calibrated_threshold, StructuredPruner(ratio=0.5), finetune_epochs=1,
                                     finetune_lr=1e-2, prefit=True).fit(X, y)
    finally:
        calibrated.set_params(target_sensitivity=None)
    inner = pruned.estimator_
    assert inner.temperature_ != calibrated.temperature_ and inner.threshold_ is not None
    model = load_onnx(export(pruned, tmp_path / "m.onnx"))
    assert model.metadata["temperature"] == inner.temperature_ and model.threshold_ == inner.threshold_
    np.testing.assert_allclose(model.predict_proba(X), pruned.predict_proba(X), atol=1e-4)
    np.testing.assert_array_equal(model.predict(X), pruned.predict(X))
