"""Diagnostic metrics and scorers for COVID-19 vs non-COVID classification.

Sensitivity is the recall of the positive (COVID) class; specificity is the
recall of the negative class. With string labels the positive class is found
from the label names unless ``pos_label`` is given, so that ``"COVID"`` vs
``"non-COVID"`` (where ``"COVID"`` sorts first) scores the right way round.

The metrics a report shows are named once, in :data:`METRICS`. One vectorised
computation gives them for :func:`diagnostic_scores`, for the point estimates of
:func:`bootstrap_scores` (and so of :mod:`skcovid.report`) and for each of its
bootstrap resamples; :func:`sensitivity_score` and :func:`specificity_score`
(which the scorers of :func:`make_scoring` use) come from
:mod:`imblearn.metrics`.

Calibration (:func:`expected_calibration_error`, :func:`bootstrap_calibration`)
and operating points (:func:`sensitivity_at_specificity`,
:func:`specificity_at_sensitivity`, :func:`bootstrap_operating_points`) score the
probability of the positive class; :func:`compare` tests two models on one test
set (DeLong, McNemar, paired bootstrap). Every interval comes from one percentile
bootstrap, which resamples samples or, with ``groups``, patients.
"""

from skcovid._core.labels import resolve_pos_label
from skcovid._decision.operating_points import sensitivity_at_specificity, specificity_at_sensitivity
from skcovid._evaluation.calibration import (
    bootstrap_calibration,
    bootstrap_operating_points,
    expected_calibration_error,
)
from skcovid._evaluation.comparison import compare
from skcovid._evaluation.metrics import (
    SCORING,
    bootstrap_scores,
    diagnostic_scores,
    make_scoring,
    scores_by_group,
    sensitivity_score,
    specificity_score,
)
from skcovid._evaluation.scoring import METRICS, one_vs_rest

__all__ = [
    "METRICS",
    "SCORING",
    "bootstrap_calibration",
    "bootstrap_operating_points",
    "bootstrap_scores",
    "compare",
    "diagnostic_scores",
    "expected_calibration_error",
    "make_scoring",
    "one_vs_rest",
    "resolve_pos_label",
    "scores_by_group",
    "sensitivity_at_specificity",
    "sensitivity_score",
    "specificity_at_sensitivity",
    "specificity_score",
]
