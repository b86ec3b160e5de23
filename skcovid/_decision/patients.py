"""One diagnosis per patient: slice probabilities aggregated over each patient's slices."""

import numpy as np
from sklearn.utils.validation import check_consistent_length, column_or_1d

from skcovid._core.estimator import first_member, owner
from skcovid._core.labels import negative_class


def check_groups(groups, n_samples):
    """``groups`` as a 1-D object array of ``n_samples`` patient ids, or an error saying what is wrong."""
    if groups is None:
        raise ValueError("groups is None; pass one patient id per slice (see skcovid.datasets.load_dicom_folder).")
    groups = column_or_1d(np.asarray(groups, dtype=object))
    check_consistent_length(np.empty(n_samples), groups)
    missing = [i for i, g in enumerate(groups) if g is None or (isinstance(g, float) and np.isnan(g))]
    if missing:
        raise ValueError(f"groups has no patient id for sample {missing[0]} ({len(missing)} samples in all).")
    return groups


def aggregate(proba, groups, classes, method="mean", *, top_k=5, threshold=0.5):
    """Patient probabilities from slice probabilities.

    Slices are ranked by how suspicious they are: one minus the probability
    of the negative class (:func:`negative_class`).

    Parameters
    ----------
    proba : ndarray of shape (n_slices, n_classes)
    groups : array-like of shape (n_slices,)
        The patient of each slice.
    classes : ndarray of shape (n_classes,)
    method : {"mean", "max", "topk", "fraction"}, default="mean"
        ``"mean"``: mean of the slices' probabilities; ``"max"``: the most
        suspicious slice's; ``"topk"``: the mean over the ``top_k`` most
        suspicious slices (all of them when there are fewer); ``"fraction"``:
        the share of slices voting for each class, a slice voting for its most
        probable class other than the negative one when its suspicion is at
        least ``threshold``, and for the negative class otherwise.
    top_k : int, default=5
    threshold : float, default=0.5

    Returns
    -------
    patients : ndarray of shape (n_patients,), dtype object
        Patient ids, sorted.
    patient_proba : ndarray of shape (n_patients, n_classes)
        Rows sum to 1.
    """
    proba = np.asarray(proba, dtype=np.float64)
    groups = check_groups(groups, len(proba))
    patients, inverse = np.unique(groups.astype(str), return_inverse=True)
    first = {p: g for p, g in zip(groups.astype(str), groups)}
    ids = np.array([first[p] for p in patients], dtype=object)
    if method == "mean":
        out = np.stack([proba[inverse == i].mean(axis=0) for i in range(len(patients))])
        return ids, out
    negative = int(np.flatnonzero(np.asarray(classes) == negative_class(classes))[0])
    suspicion = 1.0 - proba[:, negative]
    out = np.empty((len(patients), proba.shape[1]))
    for i in range(len(patients)):
        rows = np.flatnonzero(inverse == i)
        ranked = rows[np.argsort(-suspicion[rows], kind="stable")]
        if method == "max":
            out[i] = proba[ranked[0]]
        elif method == "topk":
            out[i] = proba[ranked[:top_k]].mean(axis=0)
        else:  # fraction
            others = proba[rows].copy()
            others[:, negative] = -np.inf
            votes = np.where(suspicion[rows] >= threshold, others.argmax(axis=1), negative)
            out[i] = np.bincount(votes, minlength=proba.shape[1]) / len(rows)
    return ids, out


def aggregation_of(estimator):
    """The :func:`aggregate` settings of a fitted classifier: ``method``, ``top_k`` and ``threshold``.

    A skcovid classifier's ``patient_aggregation``, ``patient_top_k`` and
    ``patient_threshold`` (of ``estimator_`` for a pruned one, of the final
    step of a Pipeline or search, of the first model of a fold ensemble); a
    mean for other classifiers.
    """
    classifier = owner(first_member(estimator))
    return {"method": getattr(classifier, "patient_aggregation", "mean"),
            "top_k": getattr(classifier, "patient_top_k", 5),
            "threshold": getattr(classifier, "patient_threshold", 0.5)}


def patient_labels(y, groups):
    """The label of each patient, from its slices' labels (which must agree).

    Returns
    -------
    patients : ndarray of shape (n_patients,), dtype object
        Sorted as :func:`aggregate` sorts them.
    labels : ndarray of shape (n_patients,)

    Raises
    ------
    ValueError
        If a patient's slices carry different labels.
    """
    y = column_or_1d(y)
    groups = check_groups(groups, len(y))
    keys = groups.astype(str)
    patients, first = np.unique(keys, return_index=True)
    labels = []
    for patient, index in zip(patients, first):
        found = np.unique(y[keys == patient])
        if len(found) > 1:
            raise ValueError(
                f"Patient {str(patient)!r} has slices labelled {found.tolist()}; a patient-level label needs "
                "one label per patient."
            )
        labels.append(y[index])
    return groups[first].astype(object), np.asarray(labels)
