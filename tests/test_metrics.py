"""Tests of skcovid.metrics: sensitivity, specificity, positive-class inference, scorers,
the one computation of the metrics and its bootstrap."""

import warnings

import imblearn.metrics
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_validate

import skcovid.metrics
from skcovid._core.labels import resolve_pos_label
from skcovid._evaluation.scoring import binary_scores
from skcovid.metrics import (
    METRICS,
    SCORING,
    bootstrap_scores,
    diagnostic_scores,
    make_scoring,
    sensitivity_score,
    specificity_score,
)

# A hand-made binary confusion matrix, positive class first:
#   TP = 3, FN = 1  (4 positives)
#   TN = 4, FP = 2  (6 negatives)
# sensitivity = 3 / 4, specificity = 4 / 6. The two differ, so swapping the
# positive and negative class cannot go unnoticed.
_Y_TRUE_01 = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
_Y_PRED_01 = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
_SENS = 3 / 4
_SPEC = 4 / 6


def _relabel(y, pos, neg):
    y = np.where(y == 1, pos, neg)
    return y.astype(object) if isinstance(pos, str) else y


# (positive label, negative label) pairs whose positive class must be inferred.
BINARY_LABELS = [
    pytest.param(1, 0, id="ints-0-1"),
    pytest.param(1, -1, id="ints-minus1-1"),
    pytest.param(True, False, id="bools"),
    # "COVID" sorts before "non-COVID": sorted-order inference would pick the wrong class.
    pytest.param("COVID", "non-COVID", id="COVID/non-COVID"),
    pytest.param("CT_COVID", "CT_NonCOVID", id="CT_COVID/CT_NonCOVID"),
    pytest.param("covid-19", "no_covid", id="covid-19/no_covid"),
    pytest.param("positive", "negative", id="positive/negative"),
]


def _binary(pos, neg):
    if isinstance(pos, bool):
        return _Y_TRUE_01.astype(bool), _Y_PRED_01.astype(bool)
    return _relabel(_Y_TRUE_01, pos, neg), _relabel(_Y_PRED_01, pos, neg)


def test_hand_confusion_matrix_is_what_the_constants_say():
    tp = np.sum((_Y_TRUE_01 == 1) & (_Y_PRED_01 == 1))
    fn = np.sum((_Y_TRUE_01 == 1) & (_Y_PRED_01 == 0))
    tn = np.sum((_Y_TRUE_01 == 0) & (_Y_PRED_01 == 0))
    fp = np.sum((_Y_TRUE_01 == 0) & (_Y_PRED_01 == 1))
    assert (tp, fn, tn, fp) == (3, 1, 4, 2)
    assert _SENS != _SPEC


@pytest.mark.parametrize("pos, neg", BINARY_LABELS)
def test_resolve_pos_label_infers_positive_class(pos, neg):
    y_true, y_pred = _binary(pos, neg)
    resolved = resolve_pos_label(y_true, y_pred)
    assert resolved == pos
    assert type(resolved) is type(pos) or isinstance(pos, str)
    # Also with the negative class listed first and in the other argument order.
    assert resolve_pos_label(y_pred[::-1], y_true[::-1]) == pos


def test_resolve_pos_label_bools_returns_true_not_1():
    y = np.array([True, False, True])
    resolved = resolve_pos_label(y, y)
    assert resolved is True or resolved is np.True_


@pytest.mark.parametrize("pos, neg", BINARY_LABELS)
def test_resolve_pos_label_given_is_returned_unchanged(pos, neg):
    y_true, y_pred = _binary(pos, neg)
    assert resolve_pos_label(y_true, y_pred, pos_label=neg) == neg
    # Even a label that cannot be inferred is returned as given.
    assert resolve_pos_label(["cat", "dog"], ["dog", "cat"], pos_label="dog") == "dog"


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(["cat", "dog"], id="cat/dog"),
        pytest.param(["non-COVID", "normal"], id="no-positive-candidate"),
        pytest.param(["COVID", "covid-19"], id="two-positive-candidates"),
        pytest.param([0, 2], id="ints-0-2"),
    ],
)
def test_resolve_pos_label_ambiguous_raises(labels):
    y = np.array(labels * 3, dtype=object if isinstance(labels[0], str) else None)
    with pytest.raises(ValueError, match="pos_label"):
        resolve_pos_label(y, y[::-1])
    with pytest.raises(ValueError, match="pos_label"):
        sensitivity_score(y, y[::-1])
    with pytest.raises(ValueError, match="pos_label"):
        specificity_score(y, y[::-1])


@pytest.mark.parametrize("pos, neg", BINARY_LABELS)
def test_sensitivity_specificity_binary(pos, neg):
    y_true, y_pred = _binary(pos, neg)
    sens = sensitivity_score(y_true, y_pred)
    spec = specificity_score(y_true, y_pred)
    assert sens == pytest.approx(_SENS)
    assert spec == pytest.approx(_SPEC)
    # Sensitivity is the recall of the positive class, specificity that of the negative one.
    assert sens == pytest.approx(recall_score(y_true, y_pred, pos_label=pos))
    assert spec == pytest.approx(recall_score(y_true, y_pred, pos_label=neg))


@pytest.mark.parametrize("pos, neg", BINARY_LABELS)
def test_explicit_pos_label_overrides_inference(pos, neg):
    y_true, y_pred = _binary(pos, neg)
    sens = sensitivity_score(y_true, y_pred, pos_label=neg)
    spec = specificity_score(y_true, y_pred, pos_label=neg)
    assert sens == pytest.approx(_SPEC)
    assert spec == pytest.approx(_SENS)
    assert sens == pytest.approx(recall_score(y_true, y_pred, pos_label=neg))
    assert spec == pytest.approx(recall_score(y_true, y_pred, pos_label=pos))


def test_explicit_pos_label_for_uninferable_labels():
    y_true = _relabel(_Y_TRUE_01, "dog", "cat")
    y_pred = _relabel(_Y_PRED_01, "dog", "cat")
    assert sensitivity_score(y_true, y_pred, pos_label="dog") == pytest.approx(_SENS)
    assert specificity_score(y_true, y_pred, pos_label="dog") == pytest.approx(_SPEC)
    assert sensitivity_score(y_true, y_pred, pos_label="cat") == pytest.approx(_SPEC)
    assert specificity_score(y_true, y_pred, pos_label="cat") == pytest.approx(_SENS)


def test_accepts_lists():
    y_true = _relabel(_Y_TRUE_01, "COVID", "non-COVID").tolist()
    y_pred = _relabel(_Y_PRED_01, "COVID", "non-COVID").tolist()
    assert sensitivity_score(y_true, y_pred) == pytest.approx(_SENS)
    assert specificity_score(y_true, y_pred) == pytest.approx(_SPEC)


# --- multiclass -------------------------------------------------------------

# Confusion matrix (rows: true class, columns: predicted class), n = 14.
_CM3 = np.array([
    [3, 1, 0],
    [1, 2, 1],
    [0, 2, 4],
])
# One-vs-rest specificity of class k: TN / (TN + FP), with
#   FP = column sum - diagonal, TN = n - row sum - column sum + diagonal.
#   class 0: FP = 1, TN = 14 - 4 - 4 + 3 = 9  -> 9 / 10
#   class 1: FP = 3, TN = 14 - 4 - 5 + 2 = 7  -> 7 / 10
#   class 2: FP = 1, TN = 14 - 6 - 5 + 4 = 7  -> 7 / 8
_SPEC3 = np.array([9 / 10, 7 / 10, 7 / 8])
_SUPPORT3 = np.array([4, 4, 6])
_SPEC3_MACRO = (0.9 + 0.7 + 0.875) / 3  # 0.825
_SPEC3_WEIGHTED = (0.9 * 4 + 0.7 * 4 + 0.875 * 6) / 14  # 11.65 / 14


def _from_confusion_matrix(cm, labels):
    y_true, y_pred = [], []
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            y_true += [labels[i]] * count
            y_pred += [labels[j]] * count
    return np.array(y_true, dtype=object), np.array(y_pred, dtype=object)


MULTI_LABELS = [
    pytest.param([0, 1, 2], id="ints"),
    pytest.param(["COVID", "non-COVID", "pneumonia"], id="strings"),
]


@pytest.mark.parametrize("labels", MULTI_LABELS)
def test_multiclass_specificity_hand_computed(labels):
    y_true, y_pred = _from_confusion_matrix(_CM3, labels)
    if isinstance(labels[0], int):
        y_true, y_pred = y_true.astype(int), y_pred.astype(int)
    per_class = specificity_score(y_true, y_pred, average=None)
    np.testing.assert_allclose(per_class, _SPEC3)
    assert specificity_score(y_true, y_pred, average="macro") == pytest.approx(_SPEC3_MACRO)
    assert specificity_score(y_true, y_pred, average="weighted") == pytest.approx(_SPEC3_WEIGHTED)
    # Weighted by true-class support like recall_score, not by predicted counts.
    assert _SPEC3_WEIGHTED != pytest.approx(np.average(_SPEC3, weights=_CM3.sum(axis=0)))
    # One-vs-rest specificity of class k is the recall of "not k".
    for k, label in enumerate(labels):
        expected = recall_score(y_true != label, y_pred != label)
        assert per_class[k] == pytest.approx(expected)


@pytest.mark.parametrize("labels", MULTI_LABELS)
def test_multiclass_sensitivity_matches_recall(labels):
    y_true, y_pred = _from_confusion_matrix(_CM3, labels)
    if isinstance(labels[0], int):
        y_true, y_pred = y_true.astype(int), y_pred.astype(int)
    for average in ("macro", "weighted"):
        assert sensitivity_score(y_true, y_pred, average=average) == pytest.approx(
            recall_score(y_true, y_pred, average=average)
        )
    np.testing.assert_allclose(
        sensitivity_score(y_true, y_pred, average=None),
        np.diag(_CM3) / _SUPPORT3,
    )


def test_binary_average_on_three_classes_raises():
    y_true, y_pred = _from_confusion_matrix(_CM3, ["COVID", "non-COVID", "pneumonia"])
    with pytest.raises(ValueError, match="multiclass"):
        specificity_score(y_true, y_pred)
    with pytest.raises(ValueError, match="multiclass"):
        specificity_score(y_true, y_pred, average="binary", pos_label="pneumonia")
    y_true, y_pred = _from_confusion_matrix(_CM3, [0, 1, 2])
    with pytest.raises(ValueError):
        specificity_score(y_true.astype(int), y_pred.astype(int), pos_label=1)
    with pytest.raises(ValueError):
        sensitivity_score(y_true.astype(int), y_pred.astype(int), pos_label=1)


@pytest.mark.parametrize("average", ["micro", "samples", "mean"])
def test_specificity_unknown_average_raises(average):
    y_true, y_pred = _from_confusion_matrix(_CM3, [0, 1, 2])
    with pytest.raises(ValueError, match="average"):
        specificity_score(y_true.astype(int), y_pred.astype(int), average=average)


# --- scorers ----------------------------------------------------------------

def _covid_data():
    X, y01 = make_classification(
        n_samples=90, n_features=6, n_informative=3, weights=[0.6, 0.4],
        flip_y=0.15, class_sep=0.6, random_state=0,
    )
    return X, _relabel(y01, "COVID", "non-COVID")


def _hand_scores(y_true, y_pred, proba_pos, pos):
    tp = np.sum((y_true == pos) & (y_pred == pos))
    fn = np.sum((y_true == pos) & (y_pred != pos))
    tn = np.sum((y_true != pos) & (y_pred != pos))
    fp = np.sum((y_true != pos) & (y_pred == pos))
    precision = tp / (tp + fp) if tp + fp else 0.0
    sensitivity = tp / (tp + fn)
    return {
        "accuracy": (tp + tn) / len(y_true),
        "sensitivity": sensitivity,
        "specificity": tn / (tn + fp),
        "precision": precision,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "roc_auc": roc_auc_score(y_true == pos, proba_pos),
    }


def test_scoring_keys():
    assert set(SCORING) == {"accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"}
    assert len(SCORING) == 6
    assert set(make_scoring(pos_label="COVID")) == set(SCORING)
    # Every list of metrics comes from METRICS, in its order.
    assert METRICS == ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc")
    assert tuple(SCORING) == tuple(make_scoring(pos_label="COVID")) == METRICS
    y, proba = _random_predictions(np.random.RandomState(0), 30)
    assert tuple(binary_scores(y == "COVID", proba[:, 0] > 0.5, proba[:, 0])) == METRICS
    scores = bootstrap_scores(y, proba, ["COVID", "non-COVID"], n_bootstraps=0)
    assert tuple(scores) == (*METRICS, "pos_label")
    assert set(skcovid.metrics.__all__) >= {"METRICS", "bootstrap_scores", "diagnostic_scores"}


@pytest.mark.parametrize("pos", ["COVID", "non-COVID"])
def test_cross_validate_scores_match_hand_computation(pos):
    X, y = _covid_data()
    clf = LogisticRegression()
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    scoring = SCORING if pos == "COVID" else make_scoring(pos_label=pos)
    results = cross_validate(clf, X, y, cv=cv, scoring=scoring, error_score="raise")

    sens_differs_from_spec = False
    for fold, (train, test) in enumerate(cv.split(X, y)):
        fitted = clone(clf).fit(X[train], y[train])
        y_pred = fitted.predict(X[test])
        proba_pos = fitted.predict_proba(X[test])[:, list(fitted.classes_).index(pos)]
        expected = _hand_scores(y[test], y_pred, proba_pos, pos)
        for name, value in expected.items():
            assert results[f"test_{name}"][fold] == pytest.approx(value, abs=1e-12), (name, fold)
        sens_differs_from_spec |= not np.isclose(expected["sensitivity"], expected["specificity"])
    # Otherwise the test could not tell the two apart.
    assert sens_differs_from_spec


def test_make_scoring_non_covid_swaps_sensitivity_and_specificity():
    X, y = _covid_data()
    clf = LogisticRegression()
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=1)
    default = cross_validate(clf, X, y, cv=cv, scoring=SCORING, error_score="raise")
    swapped = cross_validate(
        clf, X, y, cv=cv, scoring=make_scoring(pos_label="non-COVID"), error_score="raise"
    )
    np.testing.assert_allclose(swapped["test_sensitivity"], default["test_specificity"])
    np.testing.assert_allclose(swapped["test_specificity"], default["test_sensitivity"])
    assert not np.allclose(default["test_sensitivity"], default["test_specificity"])
    # Accuracy and ROC-AUC do not depend on which class is called positive.
    np.testing.assert_allclose(swapped["test_accuracy"], default["test_accuracy"])
    np.testing.assert_allclose(swapped["test_roc_auc"], default["test_roc_auc"])
    # Precision does (it becomes the negative predictive value).
    assert not np.allclose(swapped["test_precision"], default["test_precision"])


def test_scoring_with_int_labels_uses_1_as_positive():
    X, y = _covid_data()
    y01 = (y == "COVID").astype(int)
    clf = LogisticRegression()
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    by_name = cross_validate(clf, X, y, cv=cv, scoring=SCORING, error_score="raise")
    by_int = cross_validate(clf, X, y01, cv=cv, scoring=SCORING, error_score="raise")
    for name in SCORING:
        np.testing.assert_allclose(by_int[f"test_{name}"], by_name[f"test_{name}"], err_msg=name)


# --- sensitivity and specificity come from imbalanced-learn ----------------------------

def _random_labels(rng, n, labels):
    return np.asarray(labels, dtype=object)[rng.randint(0, len(labels), size=n)]


@pytest.mark.parametrize("seed", range(5))
def test_sensitivity_specificity_equal_imblearn_on_random_labels(seed):
    rng = np.random.RandomState(seed)
    y_true = _random_labels(rng, 40, ["COVID", "non-COVID"])
    y_pred = _random_labels(rng, 40, ["COVID", "non-COVID"])
    for pos in ("COVID", "non-COVID"):
        assert sensitivity_score(y_true, y_pred, pos_label=pos) == pytest.approx(
            imblearn.metrics.sensitivity_score(y_true, y_pred, pos_label=pos), abs=1e-15)
        assert specificity_score(y_true, y_pred, pos_label=pos) == pytest.approx(
            imblearn.metrics.specificity_score(y_true, y_pred, pos_label=pos), abs=1e-15)
    y_true, y_pred = _random_labels(rng, 60, [0, 1, 2, 3]), _random_labels(rng, 60, [0, 1, 2, 3])
    y_true, y_pred = y_true.astype(int), y_pred.astype(int)
    for average in (None, "macro", "weighted"):
        np.testing.assert_allclose(
            sensitivity_score(y_true, y_pred, average=average),
            imblearn.metrics.sensitivity_score(y_true, y_pred, average=average))
        np.testing.assert_allclose(
            specificity_score(y_true, y_pred, average=average),
            imblearn.metrics.specificity_score(y_true, y_pred, average=average))
    # Multi-class sensitivity is still scikit-learn's recall, micro-average included.
    for average in (None, "micro", "macro", "weighted"):
        np.testing.assert_allclose(sensitivity_score(y_true, y_pred, average=average),
                                   recall_score(y_true, y_pred, average=average))


@pytest.mark.parametrize("y_true, y_pred, pos_label, sens, spec", [
    # No negative sample: specificity is 0 (imblearn agrees).
    pytest.param([1, 1, 1], [1, 0, 1], None, 2 / 3, 0.0, id="no-negatives"),
    # No positive sample, and 1 never predicted: imblearn's binary average gives
    # specificity 0 here (pos_label is absent); skcovid keeps 1, the recall of 0.
    pytest.param([0, 0, 0], [0, 0, 0], None, 0.0, 1.0, id="only-negatives"),
    pytest.param(["non-COVID"] * 4, ["non-COVID", "COVID", "non-COVID", "non-COVID"], "COVID",
                 0.0, 3 / 4, id="no-positives"),
    pytest.param(["non-COVID"] * 2, ["non-COVID"] * 2, "COVID", 0.0, 1.0, id="positive-absent"),
])
def test_zero_division_is_0_without_warning(y_true, y_pred, pos_label, sens, spec):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sensitivity_score(y_true, y_pred, pos_label=pos_label) == sens
        assert specificity_score(y_true, y_pred, pos_label=pos_label) == spec
        assert isinstance(sensitivity_score(y_true, y_pred, pos_label=pos_label), float)


@pytest.mark.parametrize("pos, neg", [
    pytest.param(np.True_, np.False_, id="numpy-bool"),
    pytest.param(1.0, 0.0, id="floats"),
    pytest.param(np.int64(1), np.int64(0), id="numpy-int"),
])
def test_pos_label_types_imblearn_would_refuse(pos, neg):
    # imblearn's pos_label takes str or int only; skcovid passes labels=[pos_label].
    y_true = np.where(_Y_TRUE_01 == 1, pos, neg)
    y_pred = np.where(_Y_PRED_01 == 1, pos, neg)
    assert sensitivity_score(y_true, y_pred, pos_label=pos) == pytest.approx(_SENS)
    assert specificity_score(y_true, y_pred, pos_label=pos) == pytest.approx(_SPEC)
    assert sensitivity_score(y_true, y_pred, pos_label=neg) == pytest.approx(_SPEC)


def test_binary_pos_label_not_among_two_labels_raises():
    y_true, y_pred = _binary("COVID", "non-COVID")
    for score in (sensitivity_score, specificity_score):
        with pytest.raises(ValueError, match="pos_label='flu' is not a valid label"):
            score(y_true, y_pred, pos_label="flu")


# --- the one computation of the metrics ----------------------------------------------

def _random_predictions(rng, n, p_pos=0.4, decimals=2):
    y = np.where(rng.rand(n) < p_pos, "COVID", "non-COVID").astype(object)
    score = np.clip((y == "COVID") * 0.3 + rng.rand(n) * 0.7, 0, 1).round(decimals)  # with ties
    return y, np.column_stack([score, 1 - score])  # columns: COVID, non-COVID


def _library_scores(y_true, y_pred, score, pos):
    """The metrics as scikit-learn and imbalanced-learn compute them."""
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "sensitivity": imblearn.metrics.sensitivity_score(y_true, y_pred, pos_label=pos),
        "specificity": imblearn.metrics.specificity_score(y_true, y_pred, pos_label=pos),
        "precision": precision_score(y_true, y_pred, pos_label=pos, zero_division=0.0),
        "f1": f1_score(y_true, y_pred, pos_label=pos, zero_division=0.0),
        "roc_auc": roc_auc_score(y_true == pos, score),
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pos", ["COVID", "non-COVID"])
def test_point_estimates_equal_library_functions_on_random_data(seed, pos):
    rng = np.random.RandomState(seed)
    n = rng.randint(5, 300)
    y, proba = _random_predictions(rng, n, p_pos=rng.uniform(0.1, 0.9), decimals=rng.randint(1, 4))
    if len(set(y)) < 2:
        y[:2] = ["COVID", "non-COVID"]
    classes = ["COVID", "non-COVID"]
    y_pred = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    expected = _library_scores(y, y_pred, proba[:, classes.index(pos)], pos)

    scores = bootstrap_scores(y, proba, classes, pos_label=pos, n_bootstraps=0)
    assert scores["pos_label"] == pos
    for name in METRICS:
        assert scores[name]["value"] == pytest.approx(expected[name], abs=1e-12), name
        assert scores[name]["ci_low"] is None and scores[name]["ci_high"] is None

    class Fitted:  # a fitted classifier that returns these probabilities
        classes_ = np.array(classes)

        def predict_proba(self, X):
            return proba

    diagnostic = diagnostic_scores(Fitted(), None, y, pos_label=pos)
    assert diagnostic["pos_label"] == pos and tuple(diagnostic) == (*METRICS, "pos_label")
    for name in METRICS:
        assert diagnostic[name] == pytest.approx(expected[name], abs=1e-12), name
        assert diagnostic[name] == scores[name]["value"], name
        # The scorer functions agree with the one computation.
        if name in ("sensitivity", "specificity"):
            score = sensitivity_score if name == "sensitivity" else specificity_score
            assert score(y, y_pred, pos_label=pos) == pytest.approx(diagnostic[name], abs=1e-12)


def test_bootstrap_scores_match_library_functions_per_resample():
    y, proba = _random_predictions(np.random.RandomState(0), 60)
    rng = np.random.RandomState(0)
    idx = rng.randint(0, 60, size=(20, 60))
    is_pos, score = y == "COVID", proba[:, 0]
    pred_pos = score > 0.5
    resampled = binary_scores(is_pos[idx], pred_pos[idx], score[idx])
    for i, row in enumerate(idx):
        y_pred = np.where(pred_pos[row], "COVID", "non-COVID").astype(object)
        expected = _library_scores(y[row], y_pred, score[row], "COVID")
        for name in METRICS:
            assert resampled[name][i] == pytest.approx(expected[name], abs=1e-12), (name, i)
        # The AUC the report's bootstrap uses is scikit-learn's.
        assert resampled["roc_auc"][i] == pytest.approx(roc_auc_score(is_pos[row], score[row]))


def test_undefined_metrics_are_nan_in_the_core_and_0_in_diagnostic_scores():
    y = np.array(["non-COVID"] * 5, dtype=object)
    proba = np.array([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9], [0.4, 0.6], [0.3, 0.7]])
    scores = bootstrap_scores(y, proba, ["COVID", "non-COVID"], n_bootstraps=50)
    for name in ("sensitivity", "roc_auc"):
        assert np.isnan(scores[name]["value"]) and np.isnan(scores[name]["ci_low"]), name
    assert scores["specificity"]["value"] == pytest.approx(4 / 5)
    assert scores["precision"]["value"] == scores["f1"]["value"] == 0.0

    class Fitted:
        classes_ = np.array(["COVID", "non-COVID"])

        def predict_proba(self, X):
            return proba

    diagnostic = diagnostic_scores(Fitted(), None, y)
    assert diagnostic["sensitivity"] == 0.0  # as sensitivity_score gives it
    assert diagnostic["specificity"] == pytest.approx(4 / 5)
    assert np.isnan(diagnostic["roc_auc"])


def test_bootstrap_scores_intervals_and_reproducibility():
    y, proba = _random_predictions(np.random.RandomState(1), 80)
    classes = ["COVID", "non-COVID"]
    scores = bootstrap_scores(y, proba, classes, n_bootstraps=300, random_state=3)
    assert scores == bootstrap_scores(y, proba, classes, n_bootstraps=300, random_state=3)
    assert scores != bootstrap_scores(y, proba, classes, n_bootstraps=300, random_state=4)
    wide = bootstrap_scores(y, proba, classes, n_bootstraps=300, random_state=3, confidence_level=0.99)
    for name in METRICS:
        m = scores[name]
        assert m["ci_low"] <= m["value"] <= m["ci_high"], name
        assert wide[name]["ci_low"] <= m["ci_low"] and m["ci_high"] <= wide[name]["ci_high"], name
    # More resamples than one chunk of 200, and a RandomState instance.
    many = bootstrap_scores(y, proba, classes, n_bootstraps=450, random_state=np.random.RandomState(0))
    assert many["accuracy"]["ci_low"] < many["accuracy"]["ci_high"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(classes=["a", "b", "c"]), "binary"),
    (dict(proba=np.ones((10, 3))), "binary"),
    (dict(y_true=["COVID"] * 3), "3 labels and proba 10 rows"),
    (dict(y_true=["COVID", "flu"] * 5), r"labels \['flu'\]"),
    (dict(pos_label="flu"), "pos_label 'flu' is not one of the classes"),
    (dict(confidence_level=0.0), "confidence_level"),
    (dict(n_bootstraps=2.5), "n_bootstraps"),
])
def test_bootstrap_scores_bad_input(kwargs, match):
    args = dict(y_true=["COVID", "non-COVID"] * 5, proba=np.full((10, 2), 0.5),
                classes=["COVID", "non-COVID"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        bootstrap_scores(args.pop("y_true"), args.pop("proba"), args.pop("classes"), **args)
