"""The one rule that finds a model's fitted skcovid classifier (inside a Pipeline, search, pruned model or
ensemble), and the state of estimators pickled by earlier versions."""

import inspect

from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted


def final_estimator(estimator):
    """The classifier at the end of a Pipeline, or the best one of a fitted search."""
    estimator = getattr(estimator, "best_estimator_", estimator)
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def owner(model):
    """The classifier that owns a model's fitted network and decision.

    The final step of a Pipeline or the best estimator of a search
    (:func:`final_estimator`); of a :class:`~skcovid.PrunedCNNClassifier`,
    its ``estimator_``. Other models are their own owner.
    """
    model = final_estimator(model)
    return getattr(model, "estimator_", model)


def first_member(model):
    """The first fitted model of an ensemble (a VotingClassifier of fold models, frozen or not), else ``model``."""
    model = final_estimator(model)
    members = getattr(model, "estimators_", None)
    if not members:
        return model
    return members[0].estimator if isinstance(members[0], FrozenEstimator) else members[0]


def fitted_network(estimator):
    """The fitted classifier that owns the network, the network, and its input size.

    Parameters
    ----------
    estimator : TransferCNNClassifier or PrunedCNNClassifier (or a Pipeline or search ending in one)

    Returns
    -------
    classifier : TransferCNNClassifier
    module : skcovid._nets.network.TransferNet
    image_size : int
    """
    check_is_fitted(final_estimator(estimator))
    classifier = owner(estimator)
    net = getattr(classifier, "net_", None)
    if net is None:
        raise TypeError(
            f"{type(estimator).__name__} is not a skcovid classifier: expected a fitted "
            "TransferCNNClassifier or PrunedCNNClassifier (load_model(path, runtime='torch') gives one; "
            "by default it gives an ONNX Runtime predictor)."
        )
    return classifier, net.module_, classifier.image_size


def upgraded_params(cls, params):
    """Parameters of ``cls`` stored by an earlier version, brought up to date.

    The one rule for parameters that changed since a model was saved: a
    pickled state (:func:`upgraded_state`) and a safe model file's parameters
    both follow it. Parameters that ``cls`` retired (its ``_retired_params``)
    are dropped; one added since, and missing, takes the value the model was
    trained with (``cls._params_before_added``, the behaviour before the
    parameter existed), not today's default, so that an old model predicts
    as it did.

    Parameters
    ----------
    cls : type
    params : dict

    Returns
    -------
    params : dict
        A new dict.
    """
    retired = set(getattr(cls, "_retired_params", ()))
    before = getattr(cls, "_params_before_added", {})
    return {**{key: value for key, value in before.items() if key not in params},
            **{key: value for key, value in params.items() if key not in retired}}


def upgraded_state(cls, state):
    """The pickled ``state`` of an estimator of class ``cls`` saved by an earlier version, brought up to date.

    Parameters added since take the value the model was trained with, else
    their defaults; retired ones are dropped (:func:`upgraded_params`).

    Parameters
    ----------
    cls : type
    state : dict

    Returns
    -------
    state : dict
    """
    state = upgraded_params(cls, state)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name != "self":
            state.setdefault(name, param.default)
    return state
