"""Evaluation reports: :func:`evaluate` and :class:`EvaluationReport`.

The public face is :mod:`skcovid.report`, which documents the module.
"""

import json
import numbers
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.utils.validation import check_is_fitted

from skcovid._core.estimator import final_estimator
from skcovid._core.files import atomic_write, jsonable
from skcovid._core.plotting import require_matplotlib
from skcovid._decision.decide import decide
from skcovid._decision.fit import decision_of, temperature_of
from skcovid._decision.patients import aggregate, aggregation_of, patient_labels
from skcovid._evaluation import report_html as _report_html
from skcovid._evaluation import report_plots as _report_plots
from skcovid._evaluation.calibration import bootstrap_calibration, bootstrap_operating_points
from skcovid._evaluation.metrics import bootstrap_scores
from skcovid._evaluation.report_text import interval, metric_title
from skcovid._evaluation.scoring import METRICS, one_vs_rest
from skcovid._version import __version__


def _training_history(estimator):
    """Per-epoch records and the number of epochs before pruning (None when not pruned)."""
    estimator = final_estimator(estimator)
    base = getattr(estimator, "estimator_", None)
    if base is not None and hasattr(base, "history_"):
        return list(base.history_) + list(getattr(estimator, "history_", [])), len(base.history_)
    return list(getattr(estimator, "history_", [])), None


def _pruning_summary(estimator):
    estimator = final_estimator(estimator)
    if hasattr(estimator, "pruning_report") and hasattr(estimator, "estimator_"):
        return {k: jsonable(v) for k, v in estimator.pruning_report().items()}
    return None


class EvaluationReport:
    """Held-out scores of a binary classifier, with bootstrap confidence intervals.

    Build one with :func:`evaluate` (from a fitted classifier and images) or
    :meth:`from_predictions` (from labels and probabilities). With more than
    two classes, the report scores the positive class against the rest
    (:func:`skcovid.metrics.one_vs_rest`).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : ndarray of shape (n_samples, 2)
        Predicted class probabilities, columns in the order of ``classes``.
    classes : array-like of shape (2,)
    pos_label : label or None, default=None
        The positive (COVID) class; ``None`` finds it from the label names as
        :func:`skcovid.metrics.resolve_pos_label` does.
    n_bootstraps : int, default=1000
        Resamples (with replacement, of the evaluated images) for the
        percentile confidence intervals; 0 for none.
    confidence_level : float, default=0.95
    random_state : int, RandomState instance or None, default=0
        Seeds the resampling.
    history : list of dict, default=()
        Per-epoch training records (``history_`` of a skcovid classifier).
    pruned_at_epoch : int or None, default=None
        Number of epochs before pruning, drawn as a line on the learning curves.
    pruning : dict or None, default=None
        The pruning summary (``PrunedCNNClassifier.pruning_report()``).
    model : str, default=""
        A description of the model, shown in the report.
    groups : array-like of shape (n_samples,) or None, default=None
        The patient of each slice. The slice-level intervals then resample
        whole patients, and a patient-level report is added (``patients``).
    patient_proba : ndarray of shape (n_patients, n_classes) or None, default=None
        The patients' probabilities, in the order of ``np.unique`` of
        ``groups`` as strings (what :meth:`skcovid.TransferCNNClassifier.predict_patients`
        gives); ``None`` averages each patient's slices.
    threshold : float or None, default=None
        Predict the positive class where its probability is at least this (a
        classifier's ``threshold_``, chosen on validation data for a target
        sensitivity); ``None`` predicts the most probable class. The
        patient-level report predicts the most probable class.
    temperature : float or None, default=None
        The temperature the model's probabilities were scaled by (a
        classifier's ``temperature_`` under ``calibration="temperature"``),
        shown with the calibration (of both levels: the patients' probabilities
        come from the scaled slices); ``None`` when the model has none.

    Attributes
    ----------
    metrics : dict of str to dict
        For each name in :data:`skcovid.metrics.METRICS` (``accuracy``,
        ``sensitivity``, ``specificity``, ``precision``, ``f1`` and
        ``roc_auc``): ``value``, ``ci_low`` and ``ci_high``, as
        :func:`skcovid.metrics.bootstrap_scores` computes them.
    y_pred : ndarray of shape (n_samples,)
        Predicted labels (the most probable class, or as ``threshold`` says).
    threshold : float or None
        The decision threshold on P(positive) the predictions used.
    temperature : float or None
        The model's fitted temperature, as given.
    confusion_matrix : ndarray of shape (2, 2)
        Rows are true classes, columns predicted classes, both in the order of
        ``labels``: the positive class first.
    labels : list
        ``[pos_label, negative label]``.
    class_counts : dict
        Number of evaluated images of each class.
    calibration : dict
        ``brier`` and ``ece`` (expected calibration error, 10 bins of equal
        width), each with ``value``, ``ci_low`` and ``ci_high``, as
        :func:`skcovid.metrics.bootstrap_calibration` computes them.
    operating_points : list of dict
        Sensitivity at specificity 0.90 and 0.95, then specificity at
        sensitivity 0.90 and 0.95, with the threshold of each, as
        :func:`skcovid.metrics.bootstrap_operating_points` computes them.
    patients : EvaluationReport or None
        The patient-level report (one sample per patient; its intervals
        resample patients), when ``groups`` was given.
    """

    def __init__(self, y_true, proba, classes, *, pos_label=None, n_bootstraps=1000,
                 confidence_level=0.95, random_state=0, history=(), pruned_at_epoch=None,
                 pruning=None, model="", groups=None, patient_proba=None, threshold=None, temperature=None):
        # Checks the input, finds the positive class and computes every number shown.
        resampling = dict(pos_label=pos_label, n_bootstraps=n_bootstraps, confidence_level=confidence_level,
                          random_state=random_state, groups=groups)
        scores = bootstrap_scores(y_true, proba, classes, threshold=threshold, **resampling)
        self.calibration = bootstrap_calibration(y_true, proba, classes, **resampling)
        self.operating_points = bootstrap_operating_points(y_true, proba, classes, **resampling)
        self.patients = None
        if groups is not None:
            _, patient_y = patient_labels(y_true, groups)
            if patient_proba is None:
                _, patient_proba = aggregate(proba, groups, classes, "mean")
            self.patients = EvaluationReport(
                patient_y, patient_proba, classes, pos_label=pos_label, n_bootstraps=n_bootstraps,
                confidence_level=confidence_level, random_state=random_state, temperature=temperature)
        y_true, proba, classes = one_vs_rest(y_true, proba, classes, pos_label)
        class_array = np.asarray(classes)
        classes = class_array.tolist()
        proba = np.asarray(proba, dtype=np.float64)
        y_true = np.asarray(y_true)
        self.classes = classes
        self.y_true = y_true
        self.proba = proba
        self.pos_label = jsonable(scores["pos_label"])
        self.neg_label = jsonable(next(c for c in classes if c != self.pos_label))
        self.labels = [self.pos_label, self.neg_label]
        self.score = proba[:, classes.index(self.pos_label)]
        self.threshold = None if threshold is None else float(threshold)
        self.temperature = None if temperature is None else float(temperature)
        self.y_pred = decide(proba, class_array, self.threshold, scores["pos_label"])
        self.n_bootstraps = int(n_bootstraps)
        self.confidence_level = float(confidence_level)
        self.random_state = random_state
        self.history = list(history)
        self.pruned_at_epoch = pruned_at_epoch
        self.pruning = pruning
        self.model = model
        self.confusion_matrix = confusion_matrix(y_true, self.y_pred, labels=self.labels)
        self.class_counts = {c: int(np.sum(y_true == c)) for c in self.labels}
        self.metrics = {name: scores[name] for name in METRICS}

    @classmethod
    def from_predictions(cls, y_true, proba, classes, **kwargs):
        """Build a report from true labels and predicted probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
        proba : ndarray of shape (n_samples, 2)
        classes : array-like of shape (2,)
        **kwargs
            The keyword parameters of :class:`EvaluationReport`.

        Returns
        -------
        report : EvaluationReport
        """
        return cls(y_true, proba, classes, **kwargs)

    def to_dict(self):
        """Everything ``metrics.json`` holds, as JSON-ready Python objects.

        Returns
        -------
        report : dict
        """
        def clean(value):  # JSON has no NaN or infinity
            return None if value is None or not np.isfinite(value) else value

        return {
            "n_samples": len(self.y_true),
            "pos_label": jsonable(self.pos_label),
            "classes": [jsonable(c) for c in self.classes],
            "class_counts": {str(jsonable(k)): v for k, v in self.class_counts.items()},
            "metrics": {name: {k: clean(v) for k, v in m.items()} for name, m in self.metrics.items()},
            "calibration": {
                **{k: {key: clean(v) for key, v in self.calibration[k].items()} for k in ("brier", "ece")},
                "n_bins": self.calibration["n_bins"], "temperature": self.temperature},
            "operating_points": [
                {**point, **{k: {key: clean(v) for key, v in point[k].items()}
                             for k in ("sensitivity", "specificity")}, "threshold": clean(point["threshold"]),
                 "rule": "predicted positive when P(positive) >= threshold"}
                for point in self.operating_points],
            "decision": ("most probable class" if self.threshold is None
                         else f"P({self.pos_label}) >= {self.threshold:.6g}"),
            "threshold": self.threshold,
            "confidence_level": self.confidence_level,
            "n_bootstraps": self.n_bootstraps,
            "bootstrap_random_state": (self.random_state
                                       if isinstance(self.random_state, numbers.Integral) else None),
            "confusion_matrix": {
                "labels": [jsonable(c) for c in self.labels],
                "matrix": self.confusion_matrix.tolist(),
                "note": "rows are true classes, columns predicted classes",
            },
            "level": "slice",
            "patients": None if self.patients is None else {
                key: value for key, value in self.patients.to_dict().items()
                if key not in ("pruning", "model", "skcovid_version")},
            "pruning": self.pruning,
            "model": self.model,
            "skcovid_version": __version__,
        }

    def summary(self):
        """The metrics with their confidence intervals, one per line.

        Returns
        -------
        text : str
        """
        pct = round(100 * self.confidence_level)
        counts = ", ".join(f"{k}: {v}" for k, v in self.class_counts.items())
        unit = "images" if self.patients is None else "slices"
        lines = [f"{len(self.y_true)} {unit} ({counts}); positive class {self.pos_label}"]
        if self.patients is not None:
            lines[0] = f"slice level: {lines[0]} (intervals resample patients)"
        if self.threshold is not None:
            lines.append(f"{'Decision':>36}: P({self.pos_label}) >= {self.threshold:.4f} (the model's "
                         "threshold, chosen on its validation split)")
        for name in METRICS:
            lines.append(f"{metric_title(self, name):>36}: {self.metrics[name]['value']:.4f}  "
                         f"{pct}% CI {interval(self, name)}")
        for name, title in (("brier", "Brier score"), ("ece", f"ECE ({self.calibration['n_bins']} bins)")):
            lines.append(f"{title:>36}: {self.calibration[name]['value']:.4f}  "
                         f"{pct}% CI {interval(self, name, scores=self.calibration)}")
        if self.temperature is not None:
            lines.append(f"{'Temperature':>36}: {self.temperature:.4f}  (the model's, fitted on its validation "
                         "split; the probabilities above are scaled by it)")
        for point in self.operating_points:
            found, other = (("sensitivity", "specificity") if point["target"] == "specificity"
                            else ("specificity", "sensitivity"))
            lines.append(f"{point['name']:>36}: {point[found]['value']:.4f}  {pct}% CI "
                         f"{interval(self, found, scores=point)}  ({other} {point[other]['value']:.4f}, "
                         f"threshold {point['threshold']:.4f})")
        if self.patients is not None:
            lines.append("patient level: " + self.patients.summary().replace(" images (", " patients (", 1))
        return "\n".join(lines)

    def classification_report(self):
        """Format scikit-learn's classification report, headed by the summary.

        Returns
        -------
        text : str
        """
        table = classification_report(self.y_true, self.y_pred, labels=self.labels,
                                      target_names=[str(c) for c in self.labels],
                                      digits=4, zero_division=0)
        (tp, fn), (fp, tn) = self.confusion_matrix
        return (f"{self.summary()}\n\nConfusion matrix (rows true, columns predicted):\n"
                f"  TP={tp}  FN={fn}\n  FP={fp}  TN={tn}\n\n{table}")

    # ----------------------------------------------------------------- plots
    def plot_learning_curves(self):
        """Loss and accuracy per epoch, training and validation.

        Returns
        -------
        figure : matplotlib.figure.Figure or None
            ``None`` when there is no training history.
        """
        return _report_plots.learning_curves(self)

    def plot_roc_curve(self):
        """The ROC curve, with the AUC and its confidence interval and the operating points.

        Returns
        -------
        figure : matplotlib.figure.Figure
        """
        return _report_plots.roc_curve(self)

    def plot_confusion_matrix(self):
        """Draw the confusion matrix: counts and row-normalised rates, side by side.

        Returns
        -------
        figure : matplotlib.figure.Figure
        """
        return _report_plots.confusion_matrix(self)

    def plot_reliability_diagram(self):
        """Draw the reliability diagram: the share of positives against the mean probability, per bin.

        Drawn by :class:`sklearn.calibration.CalibrationDisplay` over the bins
        of the expected calibration error, above a histogram of the predicted
        probabilities of each class.

        Returns
        -------
        figure : matplotlib.figure.Figure
        """
        return _report_plots.reliability_diagram(self)

    # ------------------------------------------------------------------ save
    def save(self, out_dir, *, plots=True):
        """Write the report files into ``out_dir`` (created if needed), each atomically.

        Parameters
        ----------
        out_dir : str or path-like
        plots : bool, default=True
            Also draw the PNG plots (needs matplotlib).

        Returns
        -------
        paths : dict of str to pathlib.Path
            The files written, by kind.
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"Report folder {out} exists and is not a directory.")
        if plots:
            require_matplotlib()
        paths = {}
        with atomic_write(out / "metrics.json", "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        paths["metrics"] = out / "metrics.json"
        with atomic_write(out / "classification_report.txt", "w", encoding="utf-8") as f:
            f.write(self.classification_report())
        paths["classification_report"] = out / "classification_report.txt"
        if plots:
            for kind, figure in (("learning_curves", self.plot_learning_curves()),
                                 ("roc_curve", self.plot_roc_curve()),
                                 ("confusion_matrix", self.plot_confusion_matrix()),
                                 ("reliability_diagram", self.plot_reliability_diagram())):
                if figure is None:
                    continue
                with atomic_write(out / f"{kind}.png", "wb") as f:
                    figure.savefig(f, format="png", dpi=130)
                paths[kind] = out / f"{kind}.png"
        with atomic_write(out / "index.html", "w", encoding="utf-8") as f:
            f.write(_report_html.render(self, {k: p.name for k, p in paths.items()}))
        paths["index"] = out / "index.html"
        return paths


def evaluate(estimator, X, y, *, pos_label=None, n_bootstraps=1000, confidence_level=0.95,
             random_state=0, proba=None, groups=None):
    """Score a fitted binary classifier on held-out images.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba`` and ``classes_``
        A skcovid classifier (pruned or not), or a Pipeline or fitted search
        ending in one; its training history and pruning summary go into the
        report.
    X : array-like
        Images the estimator was not trained on.
    y : array-like of shape (n_samples,)
    pos_label : label or None, default=None
    n_bootstraps : int, default=1000
    confidence_level : float, default=0.95
    random_state : int, RandomState instance or None, default=0
    proba : ndarray of shape (n_samples, n_classes) or None, default=None
        Probabilities already computed for ``X`` (skips the forward pass).
    groups : array-like of shape (n_samples,) or None, default=None
        The patient of each slice: adds the patient-level report, the
        patients' probabilities aggregated as the classifier's
        ``patient_aggregation`` says (a mean for other classifiers).

    Returns
    -------
    report : EvaluationReport

    Examples
    --------
    >>> from skcovid.report import evaluate
    >>> report = evaluate(clf, X_test, y_test)          # doctest: +SKIP
    >>> report.save("report/")                          # doctest: +SKIP
    """
    if not hasattr(estimator, "classes_"):  # a loaded ONNX model has no fit
        check_is_fitted(estimator)
    if proba is None:
        proba = estimator.predict_proba(X)
    history, pruned_at = _training_history(estimator)
    patient_proba = None
    if groups is not None:
        _, patient_proba = aggregate(proba, groups, estimator.classes_, **aggregation_of(estimator))
    threshold, threshold_label = decision_of(estimator)
    if threshold is not None and pos_label not in (None, threshold_label):
        threshold = None  # the model's threshold is on another class's probability
    return EvaluationReport(
        y, proba, estimator.classes_, pos_label=pos_label if threshold is None else threshold_label,
        n_bootstraps=n_bootstraps, confidence_level=confidence_level, random_state=random_state,
        history=history, pruned_at_epoch=pruned_at, pruning=_pruning_summary(estimator),
        model=repr(estimator), groups=groups, patient_proba=patient_proba, threshold=threshold,
        temperature=temperature_of(estimator),
    )
