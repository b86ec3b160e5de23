"""Pruning stages for fitted networks, in the style of scikit-learn transformers.

A pruner's ``fit(module, X, y)`` scores importance and ``transform(module)``
returns the pruned module; :class:`skcovid.PrunedCNNClassifier` runs one on a
fitted :class:`skcovid.TransferCNNClassifier` and fine-tunes the result.
"""

from skcovid.pruning._magnitude import MagnitudePruner, PolynomialDecayPruning, weight_sparsity
from skcovid.pruning._measure import count_flops, count_nonzero_params, count_params, serialized_size
from skcovid.pruning._structured import StructuredPruner

__all__ = [
    "MagnitudePruner",
    "PolynomialDecayPruning",
    "StructuredPruner",
    "count_flops",
    "count_nonzero_params",
    "count_params",
    "serialized_size",
    "weight_sparsity",
]
