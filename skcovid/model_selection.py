"""Cross-validation that keeps near-copies of a slice out of its test fold.

Consecutive slices of one CT scan look alike. Datasets of slices without
patient ids, such as the SARS-CoV-2 CT-scan slices, still number their files
in scan order, so a random split puts neighbours of most test slices in the
training folds and measures memory more than generalisation.
:class:`BlockedStratifiedKFold` cuts each class into blocks of consecutive
slices, proxies for patients, and keeps every block on one side of a split.
"""

from skcovid._evaluation.split import BlockedStratifiedKFold

__all__ = [
    "BlockedStratifiedKFold",
]
