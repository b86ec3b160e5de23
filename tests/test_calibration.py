"""Calibration (Brier score, expected calibration error) and operating points, against hand computations."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_curve

from skcovid.metrics import (
    bootstrap_calibration,
    bootstrap_operating_points,
    bootstrap_scores,
    expected_calibration_error,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)

from conftest import scored_predictions

# --- expected calibration error --------------------------------------------------------

# Eight probabilities of the positive class and their outcomes. With 10 bins of width 0.1
# (bin k holds (k/10, (k+1)/10]):
#   bin 9: 0.95 (y=1)         |1 - 0.95|          = 0.05
#   bin 8: 0.85 (y=0)         |0 - 0.85|          = 0.85
#   bin 7: 0.72 (y=1)         |1 - 0.72|          = 0.28
#   bin 6: 0.65, 0.61 (1, 0)  |0.5 - 0.63|        = 0.13, weight 2
#   bin 3: 0.35 (y=0)         |0 - 0.35|          = 0.35
#   bin 1: 0.15 (y=1)         |1 - 0.15|          = 0.85
#   bin 0: 0.05 (y=0)         |0 - 0.05|          = 0.05
# ECE = (0.05 + 0.85 + 0.28 + 2 * 0.13 + 0.35 + 0.85 + 0.05) / 8 = 2.69 / 8.
# With 2 bins: (0, 0.5] holds 0.35, 0.15, 0.05 (one positive): |1/3 - 0.55/3| = 0.15, weight 3;
# (0.5, 1] holds the other five (three positive): |3/5 - 3.78/5| = 0.156, weight 5.
_Y = np.array([1, 0, 1, 1, 0, 0, 1, 0])
_P = np.array([0.95, 0.85, 0.72, 0.65, 0.61, 0.35, 0.15, 0.05])
_ECE_10 = 2.69 / 8
_ECE_2 = (3 * 0.15 + 5 * 0.156) / 8



def test_ece_hand_computed():
    assert expected_calibration_error(_Y, _P) == pytest.approx(_ECE_10)
    assert expected_calibration_error(_Y, _P, n_bins=2) == pytest.approx(_ECE_2)
    # String labels: the COVID class is positive, found from the names or given.
    y = np.where(_Y == 1, "COVID", "non-COVID").astype(object)
    assert expected_calibration_error(y, _P) == pytest.approx(_ECE_10)
    assert expected_calibration_error(y, 1 - _P, pos_label="non-COVID") == pytest.approx(_ECE_10)
    # Probabilities that match the frequencies in each bin.
    assert expected_calibration_error([1, 0, 1, 0, 0], [0.5, 0.5, 0.35, 0.35, 0.35]) == pytest.approx(
        abs(1 - 1.05) / 5)  # bin 4: exact; bin 3: one positive against 3 * 0.35
    assert expected_calibration_error([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.0
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_ece_is_the_weighted_gap_of_scikit_learns_calibration_curve(seed, n_bins):
    rng = np.random.RandomState(seed)
    proba = rng.rand(200).round(2)  # also on bin edges
    y = (rng.rand(200) < proba ** 2).astype(int)
    prob_true, prob_pred = calibration_curve(y, proba, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], proba), minlength=n_bins)
    expected = np.sum(counts[counts > 0] * np.abs(prob_true - prob_pred)) / len(y)
    assert expected_calibration_error(y, proba, n_bins=n_bins) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(y_proba=[0.5, 1.2]), r"\[0, 1\]"),
    (dict(n_bins=0), "n_bins"),
    (dict(y_true=[0, 1, 2], y_proba=[0.2, 0.7, 0.5]), "binary"),
    (dict(y_proba=[0.5]), "one length"),
])
def test_ece_bad_input(kwargs, match):
    args = dict(y_true=[0, 1], y_proba=[0.2, 0.7])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(args.pop("y_true"), args.pop("y_proba"), **args)


# --- operating points ---------------------------------------------------------------------

# Four positives scored 0.9, 0.8, 0.6, 0.3 and four negatives 0.7, 0.4, 0.2, 0.1. By threshold
# (positive when score >= threshold):
#   threshold   inf  0.9   0.8  0.7   0.6   0.4  0.3  0.2   0.1
#   sensitivity 0    0.25  0.5  0.5   0.75  0.75 1    1     1
#   specificity 1    1     1    0.75  0.75  0.5  0.5  0.25  0
_OP_Y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
_OP_S = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1])


@pytest.mark.parametrize("target, expected", [
    (1.0, (0.5, 1.0, 0.8)),     # the tie 0.25 / 0.5 at specificity 1: the higher sensitivity
    (0.9, (0.5, 1.0, 0.8)),
    (0.75, (0.75, 0.75, 0.6)),  # exactly the target counts
    (0.6, (0.75, 0.75, 0.6)),   # 0.4 ties on sensitivity 0.75 with lower specificity
    (0.5, (1.0, 0.5, 0.3)),
    (0.0, (1.0, 0.5, 0.3)),     # on a tie in sensitivity, the highest specificity
])
def test_sensitivity_at_specificity_hand_computed(target, expected):
    point = sensitivity_at_specificity(_OP_Y, _OP_S, target)
    assert tuple(point) == pytest.approx(expected)
    assert (point.sensitivity, point.specificity, point.threshold) == tuple(point)


@pytest.mark.parametrize("target, expected", [
    (1.0, (1.0, 0.5, 0.3)),
    (0.9, (1.0, 0.5, 0.3)),
    (0.75, (0.75, 0.75, 0.6)),  # 0.7 has specificity 0.75 too but sensitivity 0.5 < 0.75
    (0.5, (0.5, 1.0, 0.8)),     # on a tie in specificity, the highest sensitivity
    (0.0, (0.5, 1.0, 0.8)),
])
def test_specificity_at_sensitivity_hand_computed(target, expected):
    assert tuple(specificity_at_sensitivity(_OP_Y, _OP_S, target)) == pytest.approx(expected)


def test_operating_points_with_no_threshold_but_infinity():
    # Every negative scores above every positive: specificity 0.95 is only met by calling nothing positive.
    point = sensitivity_at_specificity([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.95)
    assert point.sensitivity == 0.0 and point.specificity == 1.0 and point.threshold == np.inf


def _brute_force(y, score, target, which):
    """Every threshold tried: (sensitivity, specificity, threshold) by the documented rule."""
    candidates = []
    for t in [np.inf, *np.unique(score)]:
        pred = score >= t
        sens, spec = np.mean(pred[y == 1]), np.mean(~pred[y == 0])
        candidates.append((sens, spec, t))
    if which == "sensitivity_at_specificity":
        return max((c for c in candidates if c[1] >= target - 1e-9), key=lambda c: (c[0], c[1]))
    return max((c for c in candidates if c[0] >= target - 1e-9), key=lambda c: (c[1], c[0]))


@pytest.mark.parametrize("seed", range(8))
def test_operating_points_equal_a_brute_force_search(seed):
    rng = np.random.RandomState(seed)
    n = rng.randint(10, 80)
    y = (rng.rand(n) < 0.5).astype(int)
    y[:2] = [0, 1]
    score = np.clip(y * 0.3 + rng.rand(n) * 0.7, 0, 1).round(rng.randint(1, 3))  # with ties
    for target in (0.5, 0.8, 0.9, 0.95, 1.0):
        assert tuple(sensitivity_at_specificity(y, score, target)) == pytest.approx(
            _brute_force(y, score, target, "sensitivity_at_specificity"))
        assert tuple(specificity_at_sensitivity(y, score, target)) == pytest.approx(
            _brute_force(y, score, target, "specificity_at_sensitivity"))
        # The point lies on scikit-learn's ROC curve.
        fpr, tpr, _ = roc_curve(y, score)
        point = sensitivity_at_specificity(y, score, target)
        assert np.any(np.isclose(tpr, point.sensitivity) & np.isclose(1 - fpr, point.specificity))


def test_operating_points_without_a_class_are_nan():
    assert np.all(np.isnan(sensitivity_at_specificity([1, 1, 1], [0.2, 0.5, 0.9], 0.9)))


@pytest.mark.parametrize("target", [-0.1, 1.5])
def test_operating_point_target_out_of_range(target):
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        sensitivity_at_specificity(_OP_Y, _OP_S, target)


# --- with bootstrap intervals -------------------------------------------------------------



def test_bootstrap_calibration_point_estimates_and_intervals():
    y, proba = scored_predictions()
    classes = ["COVID", "non-COVID"]
    scores = bootstrap_calibration(y, proba, classes, n_bootstraps=300, random_state=1)
    assert scores["brier"]["value"] == pytest.approx(brier_score_loss(y == "COVID", proba[:, 0]))
    assert scores["ece"]["value"] == pytest.approx(expected_calibration_error(y, proba[:, 0]))
    assert scores["pos_label"] == "COVID" and scores["n_bins"] == 10
    for name in ("brier", "ece"):
        assert scores[name]["ci_low"] <= scores[name]["value"] <= scores[name]["ci_high"], name
    assert scores == bootstrap_calibration(y, proba, classes, n_bootstraps=300, random_state=1)
    none = bootstrap_calibration(y, proba, classes, n_bootstraps=0)
    assert none["ece"]["ci_low"] is None and none["ece"]["value"] == scores["ece"]["value"]
    # Patients resampled whole: the intervals still hold the estimate.
    grouped = bootstrap_calibration(y, proba, classes, n_bootstraps=100, groups=np.arange(150) // 3)
    assert grouped["brier"]["ci_low"] <= grouped["brier"]["value"] <= grouped["brier"]["ci_high"]


def test_bootstrap_calibration_uses_the_resamples_of_bootstrap_scores():
    # Brier score = mean squared error of P(COVID); with hard 0/1 probabilities it is 1 - accuracy,
    # so on the same resamples its interval mirrors the accuracy's exactly.
    y, proba = scored_predictions()
    hard = (proba == proba.max(axis=1, keepdims=True)).astype(float)
    brier = bootstrap_calibration(y, hard, ["COVID", "non-COVID"], n_bootstraps=250, random_state=7)["brier"]
    accuracy = bootstrap_scores(y, hard, ["COVID", "non-COVID"], n_bootstraps=250, random_state=7)["accuracy"]
    assert brier["value"] == pytest.approx(1 - accuracy["value"])
    assert brier["ci_low"] == pytest.approx(1 - accuracy["ci_high"])
    assert brier["ci_high"] == pytest.approx(1 - accuracy["ci_low"])


def test_bootstrap_operating_points():
    y, proba = scored_predictions()
    points = bootstrap_operating_points(y, proba, ["COVID", "non-COVID"], n_bootstraps=200)
    assert [p["name"] for p in points] == [
        "sensitivity at specificity >= 0.9", "sensitivity at specificity >= 0.95",
        "specificity at sensitivity >= 0.9", "specificity at sensitivity >= 0.95"]
    for point in points:
        rule = sensitivity_at_specificity if point["target"] == "specificity" else specificity_at_sensitivity
        expected = rule(y, proba[:, 0], point["level"])
        assert point["sensitivity"]["value"] == expected.sensitivity
        assert point["specificity"]["value"] == expected.specificity
        assert point["threshold"] == expected.threshold
        assert point[point["target"]]["value"] >= point["level"]
        for name in ("sensitivity", "specificity"):
            m = point[name]
            assert m["ci_low"] <= m["value"] <= m["ci_high"], (point["name"], name)
    # The other class as positive: the probabilities of non-COVID, the same rule.
    flipped = bootstrap_operating_points(y, proba, ["COVID", "non-COVID"], pos_label="non-COVID",
                                         specificities=[0.8], sensitivities=[], n_bootstraps=0)
    assert len(flipped) == 1 and flipped[0]["sensitivity"]["ci_low"] is None
    assert flipped[0]["sensitivity"]["value"] == sensitivity_at_specificity(
        y, proba[:, 1], 0.8, pos_label="non-COVID").sensitivity
