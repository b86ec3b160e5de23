"""Evaluation reports a clinician can read: metrics with confidence intervals, plots, HTML.

:func:`evaluate` scores a fitted classifier on held-out images and returns an
:class:`EvaluationReport`; :meth:`EvaluationReport.save` writes

- ``metrics.json``: accuracy, sensitivity, specificity, precision, F1 and
  ROC-AUC (:data:`skcovid.metrics.METRICS`), each with a percentile-bootstrap
  confidence interval from :func:`skcovid.metrics.bootstrap_scores`, plus the
  confusion matrix, the class counts and, for a pruned model, the pruning
  summary; the calibration (Brier score and expected calibration error,
  :func:`skcovid.metrics.bootstrap_calibration`) and the operating points
  (sensitivity at specificity 0.90 and 0.95, specificity at sensitivity 0.90
  and 0.95, :func:`skcovid.metrics.bootstrap_operating_points`), with intervals
  from the same resamples;
- ``classification_report.txt``;
- ``learning_curves.png`` (loss and accuracy per epoch, training and
  validation; fine-tuning after pruning continues the curves), ``roc_curve.png``,
  ``confusion_matrix.png`` and ``reliability_diagram.png``, drawn with
  scikit-learn's :class:`~sklearn.metrics.RocCurveDisplay`,
  :class:`~sklearn.metrics.ConfusionMatrixDisplay` and
  :class:`~sklearn.calibration.CalibrationDisplay`;
- ``index.html``, which ties them together.

Plots need matplotlib (``pip install "skcovid[plot]"``). Every file is written
atomically.
"""

from skcovid._evaluation.report import EvaluationReport, evaluate

__all__ = [
    "EvaluationReport",
    "evaluate",
]
