"""The validation split: how much ``"auto"`` holds out, and the stratified (by patient with groups) split itself.

The one home of the split that ``fit`` trains and validates on; the pruned
estimator and the command line reuse it.
"""

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from skcovid._decision.fit import expected_validation_counts, too_small

#: What ``validation_fraction="auto"`` holds out when the data allow it ...
AUTO_VALIDATION_FRACTION = 0.1


#: ... which is when every class gives at least this many validation samples.
MIN_VALIDATION_PER_CLASS = 5


#: Patience of ``early_stopping="auto"`` when a validation set is held out.
AUTO_PATIENCE = 5


def resolve_validation(validation_fraction, early_stopping, y, *, groups=None, verbose=0, needed=False):
    """Settle ``"auto"`` validation settings for labels ``y``.

    ``validation_fraction="auto"`` holds out :data:`AUTO_VALIDATION_FRACTION`
    when that split is large enough to trust (:func:`skcovid._decision.fit.too_small`:
    100 samples and 30 a class), or, when a setting that needs a split is
    asked for (``needed``), when every class can give
    :data:`MIN_VALIDATION_PER_CLASS` samples to it; and nothing otherwise, so
    that small data trains on all of it. ``early_stopping="auto"`` is a
    patience of :data:`AUTO_PATIENCE` epochs on a split large enough to
    trust, and off otherwise: the whole schedule then trains and its final
    weights are kept. With ``groups``, every class must also have enough
    patients for one in ten of them to make at least one.

    Parameters
    ----------
    validation_fraction : "auto", float or None
    early_stopping : "auto", int or None
    y : ndarray of shape (n_samples,)
    groups : ndarray of shape (n_samples,) or None, default=None
        The patient of each sample.
    verbose : int, default=0
        At 1 or more, say what ``"auto"`` chose.
    needed : bool, default=False
        Whether a setting asked for explicitly needs a validation split (an
        int ``early_stopping``, a temperature, a threshold).

    Returns
    -------
    validation_fraction : float or None
    early_stopping : int or None
    """
    needed = needed or early_stopping not in ("auto", None)
    if validation_fraction == "auto":
        smallest = int(np.unique(y, return_counts=True)[1].min())
        enough_patients = groups is None or all(
            int(len(np.unique(groups[y == label])) * AUTO_VALIDATION_FRACTION) >= 1 for label in np.unique(y))
        trusted = too_small(expected_validation_counts(y, AUTO_VALIDATION_FRACTION)) is None
        if enough_patients and (trusted or (
                needed and int(smallest * AUTO_VALIDATION_FRACTION) >= MIN_VALIDATION_PER_CLASS)):
            validation_fraction = AUTO_VALIDATION_FRACTION
        else:
            validation_fraction = None
            if early_stopping not in ("auto", None):
                raise ValueError(
                    f"early_stopping={early_stopping} monitors a validation set, but "
                    f"validation_fraction='auto' holds none out of {len(y)} samples whose "
                    f"smallest class has {smallest} (it needs {MIN_VALIDATION_PER_CLASS} per "
                    "class at a fraction of 0.1). Set validation_fraction to a number or "
                    "early_stopping=None."
                )
            if verbose:
                why = ("a class has fewer than 10 patients, too few to hold one in ten out" if not enough_patients
                       else f"one in ten of {len(y)} samples, {smallest} in the smallest class, is too few to trust "
                            "as a validation split")
                print(f"validation_fraction='auto': {why}; training on all samples without early "
                      "stopping.", flush=True)
    if early_stopping == "auto":
        early_stopping = None if validation_fraction is None or too_small(
            expected_validation_counts(y, validation_fraction)) else AUTO_PATIENCE
    return validation_fraction, early_stopping


def validation_split(y, validation_fraction, rng, groups=None):
    """Indices of the training part and of the stratified validation part (or None).

    With ``groups``, no group (patient) has samples on both sides: the
    validation part is one fold of scikit-learn's ``StratifiedGroupKFold``
    with ``round(1 / validation_fraction)`` folds.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    validation_fraction : float or None
    rng : RandomState
    groups : ndarray of shape (n_samples,) or None, default=None

    Returns
    -------
    train_indices : ndarray of int
    valid_indices : ndarray of int or None
    """
    indices = np.arange(len(y))
    if validation_fraction is None:
        return indices, None
    if groups is not None:
        return _group_split(y, validation_fraction, rng, groups)
    try:
        return train_test_split(indices, test_size=validation_fraction, stratify=y,
                                random_state=rng)
    except ValueError as exc:
        raise ValueError(
            f"validation_fraction={validation_fraction} cannot hold out a stratified "
            f"validation set from {len(y)} samples of {len(np.unique(y))} classes ({exc}). "
            "Use more samples, a larger validation_fraction, or validation_fraction='auto'."
        ) from exc


def _group_split(y, validation_fraction, rng, groups):
    n_splits = max(2, round(1 / validation_fraction))
    seed = rng.randint(np.iinfo(np.int32).max)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keys = np.asarray(groups).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only ..."
        train_idx, valid_idx = next(splitter.split(np.empty(len(y)), y, keys))
    missing = np.setdiff1d(np.unique(y), np.unique(y[valid_idx]))
    if len(missing):
        raise ValueError(
            f"validation_fraction={validation_fraction} cannot hold out patients of every class: "
            f"the validation patients have no sample of {missing.tolist()} ({len(np.unique(keys))} "
            "patients in all). Use more patients, validation_fraction='auto' or None."
        )
    return train_idx, valid_idx
