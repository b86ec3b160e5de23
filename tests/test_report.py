"""Evaluation reports: metrics with bootstrap intervals, files, plots."""

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid.metrics import METRICS, bootstrap_calibration, bootstrap_operating_points, bootstrap_scores
from skcovid.pruning import StructuredPruner
from skcovid.report import EvaluationReport, evaluate

from conftest import FAST, scored_predictions


def test_point_estimates_match_scikit_learn():
    y, proba = scored_predictions(120)
    report = EvaluationReport(y, proba, ["COVID", "non-COVID"], n_bootstraps=0)
    y_pred = np.where(proba[:, 0] >= proba[:, 1], "COVID", "non-COVID")  # argmax: ties go first
    expected = {
        "accuracy": np.mean(y_pred == y),
        "sensitivity": recall_score(y, y_pred, pos_label="COVID"),
        "specificity": recall_score(y, y_pred, pos_label="non-COVID"),
        "precision": precision_score(y, y_pred, pos_label="COVID"),
        "f1": f1_score(y, y_pred, pos_label="COVID"),
        "roc_auc": roc_auc_score(y == "COVID", proba[:, 0]),
    }
    for name in METRICS:
        assert report.metrics[name]["value"] == pytest.approx(expected[name], abs=1e-12), name
        assert report.metrics[name]["ci_low"] is None
    assert report.pos_label == "COVID" and report.labels == ["COVID", "non-COVID"]
    (tp, fn), (fp, tn) = report.confusion_matrix
    assert tp + fn == np.sum(y == "COVID") and tp == np.sum((y_pred == "COVID") & (y == "COVID"))
    assert report.class_counts == {"COVID": np.sum(y == "COVID"), "non-COVID": np.sum(y != "COVID")}


def test_bootstrap_intervals_cover_and_shrink_and_reproduce():
    y, proba = scored_predictions(80)
    small = EvaluationReport(y, proba, ["COVID", "non-COVID"], n_bootstraps=500, random_state=1)
    again = EvaluationReport(y, proba, ["COVID", "non-COVID"], n_bootstraps=500, random_state=1)
    assert small.metrics == again.metrics
    y_big, proba_big = scored_predictions(2000)
    big = EvaluationReport(y_big, proba_big, ["COVID", "non-COVID"], n_bootstraps=500)
    for name in METRICS:
        m = small.metrics[name]
        assert m["ci_low"] <= m["value"] <= m["ci_high"], name
        assert m["ci_low"] < m["ci_high"], name
        width = lambda r: r.metrics[name]["ci_high"] - r.metrics[name]["ci_low"]  # noqa: E731
        assert width(big) < width(small) / 2, name  # about 1/sqrt(25) as wide


# The per-resample check of the bootstrap's metrics against scikit-learn's (once
# test_bootstrap_roc_auc_matches_scikit_learn_per_resample here) is in test_metrics.py,
# with the computation it checks.


@pytest.mark.parametrize("kwargs", [
    dict(n_bootstraps=300, random_state=2),
    dict(n_bootstraps=0),
    dict(n_bootstraps=250, confidence_level=0.9, pos_label="non-COVID", random_state=5),
])
def test_report_shows_what_bootstrap_scores_computes(kwargs):
    y, proba = scored_predictions(90, seed=3)
    report = EvaluationReport(y, proba, ["COVID", "non-COVID"], **kwargs)
    scores = bootstrap_scores(y, proba, ["COVID", "non-COVID"], **kwargs)
    assert report.metrics == {name: scores[name] for name in METRICS}
    assert report.pos_label == scores["pos_label"]
    assert report.to_dict()["metrics"] == {name: scores[name] for name in METRICS}  # no NaN here
    lines = report.summary().splitlines()
    assert len(lines) == 1 + len(METRICS) + 2 + 4  # metrics, Brier and ECE, four operating points
    for line, name in zip(lines[1:], METRICS):
        assert f"{scores[name]['value']:.4f}" in line, name
    # Calibration and operating points: the same resampling, the same numbers.
    calibration = bootstrap_calibration(y, proba, ["COVID", "non-COVID"], **kwargs)
    points = bootstrap_operating_points(y, proba, ["COVID", "non-COVID"], **kwargs)
    assert report.calibration == calibration and report.operating_points == points
    data = report.to_dict()
    assert data["calibration"] == {"brier": calibration["brier"], "ece": calibration["ece"], "n_bins": 10,
                                   "temperature": None}
    assert [p["sensitivity"] for p in data["operating_points"]] == [p["sensitivity"] for p in points]
    assert [p["threshold"] for p in data["operating_points"]] == [p["threshold"] for p in points]
    assert "Brier score" in lines[7] and "ECE (10 bins)" in lines[8]
    assert lines[9].strip().startswith("sensitivity at specificity >= 0.9: ")
    assert f"threshold {points[0]['threshold']:.4f}" in lines[9]
    assert lines[12].strip().startswith("specificity at sensitivity >= 0.95: ")
    assert f"{points[3]['specificity']['value']:.4f}" in lines[12]


def test_json_has_no_infinite_threshold():
    # Every negative scores above every positive: specificity 0.9 is only met by calling nothing positive.
    y = np.array(["COVID"] * 5 + ["non-COVID"] * 5, dtype=object)
    score = np.r_[np.linspace(0.1, 0.3, 5), np.linspace(0.6, 0.9, 5)]
    report = EvaluationReport(y, np.column_stack([score, 1 - score]), ["COVID", "non-COVID"], n_bootstraps=20)
    assert report.operating_points[0]["threshold"] == np.inf
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["operating_points"][0]["threshold"] is None
    assert data["operating_points"][0]["sensitivity"]["value"] == 0.0


def test_integer_labels_and_explicit_pos_label():
    y, proba = scored_predictions(120)
    y01 = (y == "COVID").astype(int)
    report = EvaluationReport(y01, proba[:, ::-1], [0, 1], n_bootstraps=0)
    assert report.pos_label == 1
    flipped = EvaluationReport(y01, proba[:, ::-1], [0, 1], pos_label=0, n_bootstraps=0)
    assert flipped.metrics["sensitivity"]["value"] == report.metrics["specificity"]["value"]
    assert json.dumps(report.to_dict())  # numpy labels become JSON


@pytest.mark.parametrize("kwargs, match", [
    (dict(classes=["a", "b", "c"]), "binary"),
    (dict(y_true=["COVID"] * 3), "3 labels and proba 120 rows"),
    (dict(y_true=np.array(["COVID", "flu"] * 60, dtype=object)), r"labels \['flu'\]"),
    (dict(confidence_level=1.0), "confidence_level"),
    (dict(n_bootstraps=-1), "n_bootstraps"),
])
def test_bad_input_is_named(kwargs, match):
    y, proba = scored_predictions(120)
    args = dict(y_true=y, proba=proba, classes=["COVID", "non-COVID"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        EvaluationReport(args.pop("y_true"), args.pop("proba"), args.pop("classes"), **args)


@pytest.fixture(scope="module")
def fitted(images):
    X, y = images
    return TransferCNNClassifier(**{**FAST, "validation_fraction": 0.25, "max_epochs": 4}).fit(X, y)


def _assert_png(path, min_side=400):
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side
        # Not a blank canvas: a readable plot has many distinct colours.
        assert len(image.convert("RGB").getcolors(1 << 20)) > 50


def test_save_writes_every_file(fitted, images, tmp_path):
    X, y = images
    report = evaluate(fitted, X, y, n_bootstraps=200)
    paths = report.save(tmp_path / "report")
    assert set(paths) == {"metrics", "classification_report", "learning_curves", "roc_curve",
                          "confusion_matrix", "reliability_diagram", "index"}
    data = json.loads(paths["metrics"].read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    assert set(data["metrics"]) == set(METRICS) and data["pruning"] is None
    assert data["confusion_matrix"]["labels"] == ["COVID", "non-COVID"]
    assert sum(data["class_counts"].values()) == len(y) == data["n_samples"]
    for kind in ("learning_curves", "roc_curve", "confusion_matrix", "reliability_diagram"):
        _assert_png(paths[kind])
    page = paths["index"].read_text()
    for name in ("learning_curves.png", "roc_curve.png", "confusion_matrix.png", "reliability_diagram.png",
                 "metrics.json", "Expected calibration error", "sensitivity at specificity &gt;= 0.95"):
        assert name in page
    assert set(data["calibration"]) == {"brier", "ece", "n_bins", "temperature"} and len(data["operating_points"]) == 4
    assert "Sensitivity" in paths["classification_report"].read_text()
    # Validation curves are drawn: the history has them.
    assert "valid_loss" in report.history[0]


def test_pruned_model_report_has_pruning_summary(fitted, images, tmp_path):
    X, y = images
    pruned = PrunedCNNClassifier(fitted, StructuredPruner(ratio=0.3), finetune_epochs=2,
                                 finetune_lr=1e-2, prefit=True).fit(X, y)
    report = evaluate(pruned, X, y, n_bootstraps=50)
    assert report.pruned_at_epoch == len(fitted.history_)
    assert len(report.history) == len(fitted.history_) + 2
    paths = report.save(tmp_path)
    data = json.loads(paths["metrics"].read_text())
    assert data["pruning"]["n_params"] < data["pruning"]["n_params_before"]
    assert "Pruning" in paths["index"].read_text()


def test_evaluate_reaches_into_a_pipeline(fitted, images):
    X, y = images
    pipe = make_pipeline(FunctionTransformer(), fitted)
    pipe.fit(X, y)  # refits the classifier inside
    report = evaluate(pipe, X, y, n_bootstraps=0)
    assert len(report.history) == len(pipe[-1].history_)


def test_report_folder_that_is_a_file(fitted, images, tmp_path):
    X, y = images
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="file"):
        evaluate(fitted, X, y, n_bootstraps=0).save(tmp_path / "file")
