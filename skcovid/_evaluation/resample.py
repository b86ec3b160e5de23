"""The one bootstrap of skcovid: percentile intervals over resamples of samples or of patients.

Every interval skcovid reports (the metrics of :func:`skcovid.metrics.bootstrap_scores`, the
calibration and operating points of the report, the paired differences of
:func:`skcovid.metrics.compare`) comes from :func:`bootstrap`. With the same ``random_state``
(an int), the same number of samples and the same ``groups``, they all see the same resamples.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

#: Resamples drawn at once without groups: memory stays at O(chunk * n_samples).
_CHUNK = 200


def check_bootstrap(n_bootstraps, confidence_level):
    """Raise ValueError for an out-of-range number of resamples or confidence level."""
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1); got {confidence_level}.")
    if not isinstance(n_bootstraps, numbers.Integral) or n_bootstraps < 0:
        raise ValueError(f"n_bootstraps must be an integer >= 0; got {n_bootstraps!r}.")


def resamples(n_samples, n_bootstraps, random_state, groups=None):
    """Yield the resamples' indices, as arrays of shape (n_resamples_in_chunk, resample_size).

    Without ``groups``, ``n_samples`` indices drawn with replacement, up to
    :data:`_CHUNK` resamples at a time. With ``groups``, whole groups (patients)
    drawn with replacement, as many as there are, one resample at a time (their
    sizes differ).
    """
    rng = check_random_state(random_state)
    if groups is not None:
        _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        members = [np.flatnonzero(inverse == i) for i in range(inverse.max() + 1)]
        for _ in range(n_bootstraps):
            yield np.concatenate([members[i] for i in rng.randint(0, len(members), len(members))])[None]
        return
    for start in range(0, n_bootstraps, _CHUNK):
        yield rng.randint(0, n_samples, size=(min(_CHUNK, n_bootstraps - start), n_samples))


def bootstrap(statistic, n_samples, *, n_bootstraps, confidence_level, random_state, groups=None):
    """Percentile-bootstrap intervals of statistics of ``n_samples`` samples.

    Parameters
    ----------
    statistic : callable
        Takes an int array of indices of shape (k, m), one resample per row,
        and returns a dict of name to an array of k values (NaN where a
        resample does not define the statistic).
    n_samples : int
    n_bootstraps, confidence_level, random_state, groups
        As in :func:`skcovid.metrics.bootstrap_scores`.

    Returns
    -------
    intervals : dict of str to (float, float)
        The central ``confidence_level`` share of each statistic's values over
        the resamples that define it; (NaN, NaN) where none does. Empty when
        ``n_bootstraps`` is 0.
    """
    samples = {}
    for idx in resamples(n_samples, n_bootstraps, random_state, groups):
        for name, values in statistic(idx).items():
            samples.setdefault(name, []).append(np.asarray(values, dtype=float).reshape(-1))
    alpha = (1 - confidence_level) / 2
    intervals = {}
    for name, chunks in samples.items():
        values = np.concatenate(chunks)
        values = values[~np.isnan(values)]
        low, high = np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan)
        intervals[name] = (float(low), float(high))
    return intervals


def estimate(value, intervals, name):
    """``{"value", "ci_low", "ci_high"}`` of one statistic; None bounds without resamples."""
    low, high = intervals.get(name, (None, None))
    return {"value": float(value), "ci_low": low, "ci_high": high}
