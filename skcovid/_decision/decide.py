"""Decisions at inference: temperature-scaled probabilities, and labels at a threshold.

numpy only: the ONNX runtime uses it without scikit-learn or PyTorch.
"""

import numpy as np


def scale(proba, temperature):
    """Probabilities under a temperature: ``softmax(logits / T)``.

    ``log(proba)`` differs from the logits by a constant per row, which the
    softmax cancels, so the probabilities are enough.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    temperature : float

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes), float64
    """
    if temperature == 1.0:
        return proba
    z = np.log(np.clip(proba, np.finfo(np.float64).tiny, None)) / temperature
    z -= z.max(axis=1, keepdims=True)
    scaled = np.exp(z)
    return scaled / scaled.sum(axis=1, keepdims=True)


def check_finite_proba(proba, source, names=None):
    """``proba``, or an error naming ``source`` and the first image whose probabilities are not finite.

    Never a label from NaN: with NaN weights or inputs, every class would otherwise win or lose at random.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    source : str
        What gave them (a network, a model file), for the message.
    names : sequence of str or None, default=None
        The images' paths; None names them by index.

    Returns
    -------
    proba : ndarray
        Unchanged.
    """
    bad = np.flatnonzero(~np.all(np.isfinite(proba), axis=1))
    if len(bad):
        first = f"image {bad[0]}" if names is None else repr(str(names[bad[0]]))
        raise ValueError(f"{source} gave probabilities that are not finite numbers for {len(bad)} of "
                         f"{len(proba)} images (the first: {first}); its weights or these inputs hold NaN or "
                         "infinity, and no label is given from them.")
    return proba


def decide(proba, classes, threshold, pos_label):
    """Class labels from probabilities: P(pos_label) >= threshold, or the most probable class.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    classes : ndarray of shape (n_classes,)
    threshold : float or None
    pos_label : label or None

    Returns
    -------
    y_pred : ndarray of shape (n_samples,)
    """
    if threshold is None:
        return classes[np.argmax(proba, axis=1)]
    column = list(classes).index(pos_label)
    return np.where(proba[:, column] >= threshold, classes[column], classes[1 - column])


#: The ways slice probabilities become a patient's.
AGGREGATIONS = ("mean", "max", "topk", "fraction")
