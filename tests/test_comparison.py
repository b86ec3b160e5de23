"""Comparing two models on one test set: DeLong's test against pROC, McNemar's test by hand, paired bootstrap."""

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from skcovid._evaluation.comparison import format_comparison
from skcovid.metrics import METRICS, bootstrap_scores, compare

# --- DeLong's test against R's pROC ----------------------------------------------------------

# The aSAH data set shipped with R's pROC package (Turck et al. 2010, Intensive Care Medicine 36:107-115):
# outcome of 113 patients after an aneurysmal subarachnoid haemorrhage and three predictors, the WFNS
# grade and the S100B and NDKA concentrations.
_ASAH_OUTCOME = (  # "G" good, "P" poor outcome (the positive class)
    "GGGGPPGPGGPGPPGGPGPPPGPGGGGGGGGGPGGPPGPPGGGGGGGGGPPGGGPGGGPG"
    "PGGPPPGPPGPPPPGGGPPGPGGGGGGPGGGGGGGGGGGGPPPPPPGGGPGGG"
)
_ASAH_WFNS = (
    "111132541252551252252111121211342145414255112411255212512221"
    "51125214524414121421232421451154221113125225552445111"
)
_ASAH_S100B = (
    "0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04 "
    "0.07 0.33 0.09 0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34 "
    "0.35 0.48 0.09 0.96 0.25 0.5 0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06 "
    "0.13 2.07 0.1 0.14 0.15 0.07 0.06 0.77 0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27 "
    "0.71 0.08 0.26 0.08 0.16 0.09 0.13 0.1 0.08 0.11 0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07 "
    "0.05 0.24 0.38 0.1 0.15 0.08 0.14 0.1 0.07 0.04 0.19 0.56 0.14 0.58 0.32 0.82 0.74 0.15 "
    "0.47 0.17 0.44 0.15 0.5 0.48"
)
_ASAH_NDKA = (
    "3.01 8.54 8.09 10.42 17.4 12.75 6 13.2 15.54 6.01 15.96 17.86 5.18 8.9 13.41 20.75 11.6 "
    "16.11 32.37 54.82 32.41 49.94 40.34 9.47 6.29 12.53 6.54 6.3 80.3 12.8 9.8 9.81 9.85 "
    "18.21 5.03 14.04 21.93 8.02 7.42 8.38 6.59 9.63 13.12 7.96 14.34 41.43 7.63 7.06 12.59 "
    "13.56 3.87 9.44 7.66 12.98 419.19 27.19 22.27 9.95 21.22 11.73 10.4 58.83 6.39 11.09 "
    "12.22 13.67 17.21 22.63 12.9 9.7 21.57 8.23 72.57 15.54 10.51 10.6 14.57 5.19 9.63 4.61 "
    "21.48 17.3 12.71 9.44 11.07 19.46 10.83 5.37 11.97 7.75 9.83 10.55 28.49 8.53 12.57 12.9 "
    "46.83 11.68 12.67 9.01 9.57 34.06 11.72 14.26 47.61 11.67 24.58 10.33 13.87 15.89 22.43 "
    "6.79 13.45"
)

_ASAH_Y = np.array(["Poor" if c == "P" else "Good" for c in _ASAH_OUTCOME], dtype=object)
_ASAH = {"wfns": np.array([int(c) for c in _ASAH_WFNS], dtype=float),
         "s100b": np.array(_ASAH_S100B.split(), dtype=float),
         "ndka": np.array(_ASAH_NDKA.split(), dtype=float)}

# pROC's roc.test(roc(outcome, s100b), roc(outcome, OTHER), method="delong"). These are the examples
# of pROC's documentation (?roc.test: "Z = -2.209, p-value = 0.02718" against WFNS, "Z = 1.3908,
# p-value = 0.1643" against NDKA; AUCs 0.7313686, 0.8236789 and 0.6119580), and the full-precision
# values below were printed by pROC 1.18.0 on R 4.2.2 (Debian's r-cran-proc), with the 95% confidence
# interval of the difference (conf.int) and the standard errors sqrt(var(roc, method="delong")).
_PROC = {
    "wfns": dict(auc_a=0.731368563685637, auc_b=0.823678861788618, z=-2.20898359144091,
                 p_value=0.0271757822291882, ci_low=-0.1742144192494776, ci_high=-0.0104061769564846,
                 se_a=0.0516592920699891, se_b=0.0383394667258639),
    "ndka": dict(auc_a=0.731368563685637, auc_b=0.611957994579946, z=1.39077002573558,
                 p_value=0.164295175223054, ci_low=-0.0488706064228094, ci_high=0.2876917446341914),
}


@pytest.mark.parametrize("other", sorted(_PROC))
def test_delong_equals_proc_on_asah(other):
    result = compare(_ASAH_Y, _ASAH["s100b"], _ASAH[other], pos_label="Poor", n_bootstraps=0)
    delong = result["delong"]
    for key, expected in _PROC[other].items():
        assert delong[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), key
    assert delong["difference"] == pytest.approx(delong["auc_a"] - delong["auc_b"])
    assert delong["z"] == pytest.approx(delong["difference"] / delong["se"])
    assert delong["auc_a"] == pytest.approx(roc_auc_score(_ASAH_Y == "Poor", _ASAH["s100b"]))
    assert result["n_samples"] == 113 and result["n_positive"] == 41 and result["pos_label"] == "Poor"
    # The other way round: the same test, the difference negated.
    swapped = compare(_ASAH_Y, _ASAH[other], _ASAH["s100b"], pos_label="Poor", n_bootstraps=0)["delong"]
    assert swapped["z"] == pytest.approx(-delong["z"]) and swapped["p_value"] == pytest.approx(delong["p_value"])


def test_delong_of_identical_models():
    result = compare(_ASAH_Y, _ASAH["wfns"], _ASAH["wfns"], pos_label="Poor", n_bootstraps=50)
    assert result["delong"]["difference"] == 0 and result["delong"]["se"] == 0
    assert result["delong"]["p_value"] == 1.0 and result["mcnemar"]["p_value"] == 1.0
    for name in METRICS:
        assert result["differences"][name]["ci_low"] == result["differences"][name]["ci_high"] == 0, name


# --- McNemar's test -------------------------------------------------------------------------

def _paired(only_a, only_b, both=20, neither=5):
    """Probabilities of the positive class of two models with the given right/wrong counts, by class."""
    y, a, b = [], [], []
    for n, right_a, right_b in ((only_a, True, False), (only_b, False, True), (both, True, True),
                                (neither, False, False)):
        for i in range(n):
            label = i % 2  # alternate the classes
            y.append(label)
            a.append(0.3 + 0.4 * (label == right_a) + 0.001 * i)  # > 0.5 exactly when it says `label`
            b.append(0.3 + 0.4 * (label == right_b) + 0.002 * i)
    return np.array(y), np.array(a), np.array(b)


@pytest.mark.parametrize("only_a, only_b, method, p_value", [
    # Exact: two-sided binomial test of only_a successes in only_a + only_b trials at 1/2.
    (3, 0, "exact binomial", 2 * 0.5 ** 3),
    (7, 2, "exact binomial", 2 * (1 + 9 + 36) / 2 ** 9),
    (12, 12, "exact binomial", 1.0),
    (14, 10, "exact binomial", binomtest(14, 24, 0.5).pvalue),  # 24 discordant: still exact
    # Chi-square with continuity correction, one degree of freedom: P(X > x) = erfc(sqrt(x / 2)).
    (15, 10, "chi-square with continuity correction", math.erfc(math.sqrt((5 - 1) ** 2 / 25 / 2))),
    (30, 15, "chi-square with continuity correction", math.erfc(math.sqrt(196 / 45 / 2))),
])
def test_mcnemar_hand_computed(only_a, only_b, method, p_value):
    y, a, b = _paired(only_a, only_b)
    mcnemar = compare(y, a, b, n_bootstraps=0)["mcnemar"]
    assert mcnemar["method"] == method
    assert (mcnemar["n_only_a_correct"], mcnemar["n_only_b_correct"]) == (only_a, only_b)
    assert mcnemar["p_value"] == pytest.approx(p_value, rel=1e-9)
    assert mcnemar["difference"] == pytest.approx((only_a - only_b) / len(y))
    if method.startswith("chi"):
        assert mcnemar["statistic"] == pytest.approx((abs(only_a - only_b) - 1) ** 2 / (only_a + only_b))
    else:
        assert mcnemar["p_value"] == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)


# --- paired bootstrap and input forms ---------------------------------------------------------

def _two_models(n=120, seed=0):
    rng = np.random.RandomState(seed)
    y = np.where(rng.rand(n) < 0.45, "COVID", "non-COVID").astype(object)
    signal = (y == "COVID").astype(float)
    a = np.clip(0.4 * signal + 0.6 * rng.rand(n), 0, 1)
    b = np.clip(0.25 * signal + 0.75 * rng.rand(n), 0, 1)
    return y, a, b


def test_paired_bootstrap_intervals():
    y, a, b = _two_models()
    classes = ["COVID", "non-COVID"]
    proba_a, proba_b = np.column_stack([a, 1 - a]), np.column_stack([b, 1 - b])
    result = compare(y, proba_a, proba_b, classes=classes, n_bootstraps=300, random_state=2)
    assert result["pos_label"] == "COVID" and result["n_bootstraps"] == 300
    scores_a = bootstrap_scores(y, proba_a, classes, n_bootstraps=0)
    scores_b = bootstrap_scores(y, proba_b, classes, n_bootstraps=0)
    for name in METRICS:
        diff = result["differences"][name]
        assert diff["a"] == scores_a[name]["value"] and diff["b"] == scores_b[name]["value"], name
        assert diff["difference"] == pytest.approx(diff["a"] - diff["b"])
        assert diff["ci_low"] <= diff["difference"] <= diff["ci_high"], name
    assert result["differences"]["roc_auc"]["difference"] == pytest.approx(result["delong"]["difference"])
    assert result["differences"]["accuracy"]["difference"] == pytest.approx(result["mcnemar"]["difference"])
    assert result == compare(y, proba_a, proba_b, classes=classes, n_bootstraps=300, random_state=2)
    json.dumps(result)
    # 1-d probabilities of the positive class, and 2-d ones with the classes of y_true, agree.
    assert compare(y, a, b, n_bootstraps=300, random_state=2) == result
    assert compare(y, proba_a, proba_b, n_bootstraps=300, random_state=2) == result
    # Patients resampled whole.
    grouped = compare(y, a, b, n_bootstraps=100, groups=np.arange(len(y)) // 4)
    assert grouped["delong"] == result["delong"]
    assert grouped["differences"]["f1"]["ci_low"] <= grouped["differences"]["f1"]["difference"]


def test_compare_follows_each_models_threshold():
    y, a, b = _two_models()
    classes = ["COVID", "non-COVID"]
    proba_a, proba_b = np.column_stack([a, 1 - a]), np.column_stack([b, 1 - b])
    result = compare(y, proba_a, proba_b, classes=classes, n_bootstraps=0, threshold_a=0.2)
    is_covid = y == "COVID"
    assert result["mcnemar"]["accuracy_a"] == pytest.approx(np.mean((a >= 0.2) == is_covid))
    assert result["mcnemar"]["accuracy_b"] == pytest.approx(np.mean((b > 0.5) == is_covid))
    assert result["differences"]["sensitivity"]["a"] == pytest.approx(np.mean(a[is_covid] >= 0.2))
    untouched = compare(y, proba_a, proba_b, classes=classes, n_bootstraps=0)
    assert result["delong"] == untouched["delong"] and result["mcnemar"] != untouched["mcnemar"]
    assert (result["threshold_a"], result["threshold_b"]) == (0.2, None)
    # The same on 1-d probabilities of the positive class.
    assert compare(y, a, b, n_bootstraps=0, threshold_a=0.2)["mcnemar"] == result["mcnemar"]
    assert "decisions: A P(COVID) >= 0.2000, B the most probable class" in format_comparison(result)


def test_compare_more_than_two_classes_scores_the_positive_class_against_the_rest():
    rng = np.random.RandomState(0)
    y = rng.choice(["CAP", "COVID-19", "normal"], size=60).astype(object)
    proba_a, proba_b = rng.dirichlet([1, 1, 1], 60), rng.dirichlet([1, 1, 1], 60)
    result = compare(y, proba_a, proba_b, classes=["CAP", "COVID-19", "normal"], n_bootstraps=0)
    assert result["pos_label"] == "COVID-19"
    assert result["delong"]["auc_a"] == pytest.approx(roc_auc_score(y == "COVID-19", proba_a[:, 1]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(proba_b=np.full(6, 0.5).reshape(3, 2)), "of one shape"),
    (dict(y_true=[1, 0, 0, 0, 0, 0]), "at least two samples of each class"),
    (dict(proba_a=np.full((6, 2), 0.5), proba_b=np.full((6, 2), 0.5), y_true=[0, 1, 2, 0, 1, 2]),
     "classes="),
    (dict(confidence_level=1.5), "confidence_level"),
    (dict(n_bootstraps=-1), "n_bootstraps"),
])
def test_compare_bad_input(kwargs, match):
    args = dict(y_true=[1, 1, 1, 0, 0, 0], proba_a=[0.9, 0.8, 0.4, 0.3, 0.6, 0.1],
                proba_b=[0.7, 0.6, 0.5, 0.5, 0.2, 0.3])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        compare(args.pop("y_true"), args.pop("proba_a"), args.pop("proba_b"), **args)
