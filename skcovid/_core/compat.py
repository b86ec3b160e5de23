"""The one place third-party private names enter skcovid.

scikit-learn's parameter validation (``_fit_context`` and the constraint
classes of ``sklearn.utils._param_validation``) is private API that every
scikit-learn-compatible estimator library uses, and Torch-Pruning's
``_get_channel_groups`` is the only way to learn how many channel groups a
grouped convolution prunes in. Should either move, this module is the one
that changes.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, InvalidParameterError, StrOptions

__all__ = ["HasMethods", "Interval", "InvalidParameterError", "Satisfies", "StrOptions", "channel_groups",
           "fit_context", "validate_parameters"]

#: ``sklearn.base._fit_context``: parameter validation at the start of ``fit``.
fit_context = _fit_context


def validate_parameters(estimator):
    """Check an estimator's parameters against its ``_parameter_constraints``, as ``fit`` does.

    scikit-learn's ``BaseEstimator._validate_params``: raises
    ``InvalidParameterError`` (a ``ValueError``) naming the parameter.
    """
    estimator._validate_params()


def channel_groups(pruner, group):
    """How many channel groups a Torch-Pruning ``pruner`` prunes ``group`` in (1 but for grouped convolutions)."""
    return pruner._get_channel_groups(group)


class Satisfies(HasMethods):
    """A parameter constraint given by a predicate, for ``_parameter_constraints``.

    scikit-learn's constraints cover types, intervals and options; this one
    covers the rest (a backbone name, a sequence of layer widths, an optimizer
    class) so that every single-parameter check runs in ``_validate_params``.
    It is a :class:`~sklearn.utils._param_validation.HasMethods` (of no
    methods) only because scikit-learn accepts constraints of its own kinds.

    Parameters
    ----------
    predicate : callable
        Returns whether a value is valid; an exception counts as invalid.
    description : str
        What a valid value is, for the error message.
    """

    def __init__(self, predicate, description):
        super().__init__([])
        self.predicate = predicate
        self.description = description

    def is_satisfied_by(self, val):
        try:
            return bool(self.predicate(val))
        except Exception:
            return False

    def __str__(self):
        return self.description
