"""Blocked stratified cross-validation.

The public face is :mod:`skcovid.model_selection`, which documents the module.
"""

import re
from numbers import Integral

import numpy as np
from sklearn.model_selection import BaseCrossValidator, StratifiedGroupKFold
from sklearn.utils.validation import check_consistent_length, column_or_1d

from skcovid._imaging.raster import as_paths

_ORDERS = ("natural", "given")


def _natural_key(path):
    """``"Covid (10).png"`` after ``"Covid (9).png"``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", str(path).lower()) if part]


class BlockedStratifiedKFold(BaseCrossValidator):
    """Stratified K-fold over blocks of consecutive samples of each class.

    Within each class, the samples, in scan order, are cut into blocks of
    ``block_size`` consecutive ones; the blocks are the groups of a
    :class:`~sklearn.model_selection.StratifiedGroupKFold`, so no block is
    split between training and test folds and each fold keeps the class
    proportions. Use it for slices without patient ids whose order follows
    the scans; with patient ids, split by patient
    (``StratifiedGroupKFold`` with ``groups``) instead.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2.
    block_size : int, default=25
        Consecutive slices per block. About the number of slices a scan
        contributes is right; larger is safer against leakage.
    order : {"natural", "given"}, default="natural"
        The scan order. ``"natural"``: the paths' order with numbers in names
        compared as numbers (``"Covid (9).png"`` before ``"Covid (10).png"``,
        which a plain sort, and so skcovid's folder loaders, put the other way
        round); arrays keep their order. ``"given"``: the order of ``X``.
    shuffle : bool, default=False
        Shuffle the blocks before assigning them to folds (the slices inside
        a block stay together).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling, with ``shuffle=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skcovid.model_selection import BlockedStratifiedKFold
    >>> X = [f"slice ({i}).png" for i in range(1, 13)]
    >>> y = np.array(["COVID"] * 6 + ["non-COVID"] * 6)
    >>> cv = BlockedStratifiedKFold(n_splits=3, block_size=2)
    >>> [test.tolist() for _, test in cv.split(X, y)]
    [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]
    """

    def __init__(self, n_splits=5, *, block_size=25, order="natural", shuffle=False, random_state=None):
        for name, value, low in (("n_splits", n_splits, 2), ("block_size", block_size, 1)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}; got {value!r}.")
        if order not in _ORDERS:
            raise ValueError(f"order={order!r} is not valid; choose one of {list(_ORDERS)}.")
        self.n_splits = n_splits
        self.block_size = block_size
        self.order = order
        self.shuffle = shuffle
        self.random_state = random_state

    def blocks(self, X, y):
        """The block of each sample, the proxy patients the folds keep together.

        Parameters
        ----------
        X : array-like of shape (n_samples,) or (n_samples, ...)
            Image paths (ordered by ``order``) or any samples.
        y : array-like of shape (n_samples,)

        Returns
        -------
        blocks : ndarray of shape (n_samples,), dtype int
            Block numbers: those of one class are consecutive integers.
        """
        y = column_or_1d(y)
        check_consistent_length(X, y)
        paths = as_paths(X) if self.order == "natural" else None
        blocks = np.empty(len(y), dtype=int)
        start = 0
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            if paths is not None:
                members = np.asarray(sorted(members, key=lambda i: _natural_key(paths[i])), dtype=int)
            numbers = np.arange(len(members)) // self.block_size
            blocks[members] = start + numbers
            start += numbers[-1] + 1
        return blocks

    def split(self, X, y, groups=None):
        """Training and test indices of each fold.

        Parameters
        ----------
        X : array-like of shape (n_samples,) or (n_samples, ...)
        y : array-like of shape (n_samples,)
        groups : None
            Ignored: the blocks are the groups.

        Yields
        ------
        train : ndarray
        test : ndarray
        """
        blocks = self.blocks(X, y)
        splitter = StratifiedGroupKFold(self.n_splits, shuffle=self.shuffle,
                                        random_state=self.random_state if self.shuffle else None)
        yield from splitter.split(np.zeros(len(blocks)), column_or_1d(y), blocks)

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of folds.

        Parameters
        ----------
        X, y, groups : object
            Ignored.

        Returns
        -------
        n_splits : int
        """
        return self.n_splits
