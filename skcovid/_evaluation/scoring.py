"""The binary predictions and scores behind every metric of skcovid.metrics, its reports and comparisons."""

import numpy as np
from scipy.stats import rankdata

from skcovid._core.labels import resolve_pos_label


def divide(num, den, empty):
    """``num / den`` elementwise, ``empty`` where ``den`` is 0."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, empty, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def binary_scores(is_pos, pred_pos, score):
    """The metrics of :data:`METRICS` along the last axis of truth, prediction and score arrays.

    The one computation of the metrics for :func:`skcovid.metrics.diagnostic_scores` and
    :func:`skcovid.metrics.bootstrap_scores`: 1-d arrays give the point estimates, 2-d arrays
    (one row per bootstrap resample) give them all at once.

    Parameters
    ----------
    is_pos, pred_pos : ndarray of bool
        Whether each sample is of the positive class, and is predicted to be.
    score : ndarray of float
        The score (probability) of the positive class.

    Returns
    -------
    scores : dict of str to ndarray
        Sensitivity, specificity and ROC-AUC are NaN when a class is absent;
        precision and F1 are 0 when undefined, as scikit-learn's functions give
        them with ``zero_division=0``.
    """
    tp = np.sum(is_pos & pred_pos, axis=-1)
    fp = np.sum(~is_pos & pred_pos, axis=-1)
    fn = np.sum(is_pos & ~pred_pos, axis=-1)
    tn = np.sum(~is_pos & ~pred_pos, axis=-1)
    n_pos, n_neg = tp + fn, tn + fp
    # Mann-Whitney: ties get their average rank, so the AUC counts them as 1/2.
    ranks = rankdata(score, axis=-1)
    rank_sum = np.sum(np.where(is_pos, ranks, 0.0), axis=-1)
    return {
        "accuracy": (tp + tn) / (n_pos + n_neg),
        "sensitivity": divide(tp, n_pos, np.nan),
        "specificity": divide(tn, n_neg, np.nan),
        "precision": divide(tp, tp + fp, 0.0),
        "f1": divide(2 * tp, 2 * tp + fp + fn, 0.0),
        "roc_auc": divide(rank_sum - n_pos * (n_pos + 1) / 2, n_pos * n_neg, np.nan),
    }


def binary_predictions(y_true, proba, classes, pos_label, threshold=None):
    """Check binary predictions; return the positive class, truth, prediction and score.

    The prediction is the most probable class, or, with ``threshold``, the
    positive class where its probability is at least ``threshold``.
    """

    if len(classes) > 2 and np.ndim(proba) == 2 and np.shape(proba)[1] == len(classes):
        unknown = sorted(set(np.asarray(y_true).tolist()) - set(np.asarray(classes).tolist()), key=str)
        if unknown:
            raise ValueError(f"y_true has labels {unknown} the model does not know ({list(classes)}).")
        y_true, proba, classes = one_vs_rest(y_true, proba, classes, pos_label)
    class_array = np.asarray(classes)
    classes = class_array.tolist()
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(classes) != 2 or proba.ndim != 2 or proba.shape[1] != 2:
        raise ValueError(
            f"Only binary classification is supported; got classes {classes} and "
            f"probabilities of shape {proba.shape}."
        )
    if len(y_true) != len(proba) or len(y_true) == 0:
        raise ValueError(
            f"y_true has {len(y_true)} labels and proba {len(proba)} rows; they must match "
            "and not be empty."
        )
    unknown = sorted(set(y_true.tolist()) - set(classes), key=str)
    if unknown:
        raise ValueError(f"y_true has labels {unknown} the model does not know ({classes}).")
    y_pred = class_array[proba.argmax(axis=1)]
    pos_label = resolve_pos_label(y_true, y_pred, pos_label)
    if pos_label not in classes:
        raise ValueError(f"pos_label {pos_label!r} is not one of the classes {classes}.")
    score = proba[:, classes.index(pos_label)]
    pred_pos = y_pred == pos_label if threshold is None else score >= threshold
    return pos_label, y_true == pos_label, pred_pos, score


#: Names of the diagnostic metrics, in the order reports show them: the keys of
#: :data:`SCORING`, of :func:`diagnostic_scores` and of :func:`bootstrap_scores`.
METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc")


def one_vs_rest(y_true, proba, classes, pos_label=None):
    """A problem of more than two classes as the positive class against the rest.

    Two classes are returned unchanged. With more (COVID-19, community-acquired
    pneumonia and normal, say), the positive class is found among ``classes``
    as :func:`resolve_pos_label` finds it (or given), every other label becomes
    ``"not <positive>"``, and the probability of the rest is the sum of theirs.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    proba : array-like of shape (n_samples, n_classes)
    classes : array-like of shape (n_classes,)
    pos_label : label or None, default=None

    Returns
    -------
    y_true : ndarray of shape (n_samples,)
    proba : ndarray of shape (n_samples, 2)
    classes : list
        ``[positive, "not <positive>"]`` with more than two classes.

    Examples
    --------
    >>> from skcovid.metrics import one_vs_rest
    >>> y, proba, classes = one_vs_rest(["CAP", "COVID-19"], [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]],
    ...                                 ["CAP", "COVID-19", "normal"])
    >>> classes, y.tolist(), proba[:, 0].tolist()
    (['COVID-19', 'not COVID-19'], ['not COVID-19', 'COVID-19'], [0.3, 0.8])
    """
    classes = np.asarray(classes).tolist()
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(classes) <= 2:
        return y_true, proba, classes
    pos_label = resolve_pos_label(np.asarray(classes), np.asarray(classes), pos_label)
    if pos_label not in classes:
        raise ValueError(f"pos_label {pos_label!r} is not one of the classes {classes}.")
    rest = f"not {pos_label}"
    score = proba[:, classes.index(pos_label)]
    y = np.where(y_true == pos_label, pos_label, rest).astype(object)
    return y, np.column_stack([score, proba.sum(axis=1) - score]), [pos_label, rest]
