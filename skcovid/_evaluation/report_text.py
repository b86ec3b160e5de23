"""How a report names its metrics and writes their intervals, for its summary, its HTML and its plots."""

import numpy as np

# Row titles of the metrics of skcovid.metrics.METRICS.
_TITLES = {
    "accuracy": "Accuracy", "sensitivity": "Sensitivity (recall of {pos})",
    "specificity": "Specificity (recall of {neg})", "precision": "Precision (PPV)",
    "f1": "F1 score", "roc_auc": "ROC-AUC",
}


def metric_title(report, name):
    """The row title of metric ``name`` in ``report``, naming its positive and negative classes."""
    return _TITLES[name].format(pos=report.pos_label, neg=report.neg_label)


def interval(report, name, fmt="{:.4f}", scores=None):
    """``"[low, high]"``, the confidence interval of ``name`` in ``scores`` (the report's metrics), or ``"n/a"``."""
    m = (report.metrics if scores is None else scores)[name]
    if m["ci_low"] is None or np.isnan(m["ci_low"]):
        return "n/a"
    return f"[{fmt.format(m['ci_low'])}, {fmt.format(m['ci_high'])}]"
