"""Real SARS-CoV-2 CT slices for the benchmarks (duplicates dropped), or a clear exit; the classifier as measured."""

import os
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sarscov2-ctscan"


def classifier(**params):
    """A ``TransferCNNClassifier`` with the defaults under which these benchmarks' figures were measured.

    Until 2026-12-04 the classifier's defaults were EfficientNet-Lite0 at 224 px
    without crop, test-time augmentation or temperature; they are now the default
    recipe's (Lite2, 260 px, ``crop="body"``, ``tta="flip"``, ``calibration="auto"``).
    The ``"frozen"`` recipe keeps the earlier ones: the scripts start from it so
    that they still give the tables in docs/.
    """
    from skcovid import RECIPES, TransferCNNClassifier

    return TransferCNNClassifier(**{**RECIPES["frozen"], **params})


def real_slices(n=None, *, data_dir=None, random_state=0, drop_duplicates=True):
    """Paths and labels of ``n`` real slices (stratified sample, seed 0), or all of them.

    All is 2479 without the two duplicated files, 2481 with them.
    """
    from skcovid.datasets import fetch_sarscov2_ct

    root = Path(data_dir or os.environ.get("SKCOVID_SARSCOV2_DIR", DEFAULT))
    if not root.is_dir():
        sys.exit(f"SARS-CoV-2 CT-scan dataset not found at {root}; pass --data-dir or set "
                 "SKCOVID_SARSCOV2_DIR.")
    os.environ["SKCOVID_SARSCOV2_DIR"] = str(root)
    X, y = fetch_sarscov2_ct(drop_duplicates=drop_duplicates, return_X_y=True)
    if n is not None and n < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=n, stratify=y, random_state=random_state)
    return np.asarray(X, dtype=object), np.asarray(y, dtype=object)


def machine():
    """One line on where the numbers come from."""
    import platform

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
