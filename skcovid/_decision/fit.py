"""From probabilities to decisions: temperature scaling and a threshold for a target sensitivity.

Both are fitted at the end of ``fit`` on the validation split (images the
network did not train on), and both live on the classifier that owns the
network (``estimator_`` of a pruned one, refitted after pruning).
"""

import copy
import warnings

import numpy as np
from scipy.optimize import minimize_scalar

from skcovid._core.estimator import owner as owner_of
from skcovid._core.labels import resolve_pos_label
from skcovid._decision.decide import scale
from skcovid._decision.operating_points import specificity_at_sensitivity

#: A validation split under this many samples in all ...
MIN_TRUSTED_SPLIT = 100
#: ... or under this many in a class is too small to trust: its minimum loss, its temperature, its threshold.
MIN_TRUSTED_PER_CLASS = 30


def too_small(class_counts):
    """Whether a validation split of these per-class sizes is too small to trust (a sentence saying why), or None.

    Under :data:`MIN_TRUSTED_SPLIT` samples, or :data:`MIN_TRUSTED_PER_CLASS`
    in a class, a split's minimum validation loss is mostly noise: early
    stopping on it restores whatever epoch was lucky, and a temperature or a
    threshold fitted on it follows the same few images.

    Parameters
    ----------
    class_counts : sequence of int
        The split's samples of each class.

    Returns
    -------
    why : str or None
    """
    counts = [int(c) for c in class_counts]
    if sum(counts) >= MIN_TRUSTED_SPLIT and min(counts) >= MIN_TRUSTED_PER_CLASS:
        return None
    return (f"{sum(counts)} validation samples, {min(counts)} in the smallest class, are too few to trust "
            f"(under {MIN_TRUSTED_SPLIT}, or {MIN_TRUSTED_PER_CLASS} a class)")


def expected_validation_counts(y, validation_fraction):
    """The per-class sizes of a stratified validation split of ``y`` at ``validation_fraction``, before it is drawn."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return np.round(counts * validation_fraction).astype(int)


#: Temperatures searched by :func:`fit_temperature`.
_TEMPERATURES = (0.05, 20.0)


def fit_temperature(proba, y_encoded):
    """The temperature that minimises the negative log-likelihood of ``y_encoded``.

    Guo et al. (2017): one scalar ``T`` divides every logit; the ranking, and
    so the ROC curve, stays the same.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Validation probabilities at temperature 1.
    y_encoded : ndarray of int of shape (n_samples,)

    Returns
    -------
    temperature : float
        In ``[0.05, 20]``.

    Warns
    -----
    UserWarning
        When the temperature ends at a bound of the search: the validation
        probabilities are then too few, or too unlike the training images,
        to calibrate the model.
    """
    rows = np.arange(len(y_encoded))

    def nll(log_t):
        return -np.mean(np.log(np.clip(scale(proba, np.exp(log_t))[rows, y_encoded], 1e-300, None)))

    low, high = np.log(_TEMPERATURES)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    if min(result.x - low, high - result.x) < 0.01:
        effect = "flattens every probability towards uniform" if result.x > 0 else "pushes every probability to 0 or 1"
        warnings.warn(
            f"The temperature fitted on the {len(y_encoded)} validation images reached the bound "
            f"{np.exp(result.x):.3g} of its search {_TEMPERATURES} and {effect}: those images are too few, or "
            "too unlike the training images, to calibrate the model. Hold out more images or patients "
            "(validation_fraction), or calibrate by cross-validation (sklearn.calibration.CalibratedClassifierCV).",
            UserWarning, stacklevel=3)
    return float(np.exp(result.x))


def fit_decision(classifier, proba, y_encoded):
    """Set ``temperature_``, ``temperature_fitted_``, ``threshold_`` and ``pos_label_`` of a fitted classifier.

    ``calibration="auto"`` fits a temperature only on a split large enough to
    trust (:func:`too_small`); otherwise it stays 1 and ``temperature_fitted_``
    says so.

    Parameters
    ----------
    classifier : TransferCNNClassifier
        Reads ``calibration``, ``target_sensitivity`` and ``classes_``.
    proba : ndarray of shape (n_samples, n_classes) or None
        The validation split's probabilities at temperature 1; None when
        neither setting is on.
    y_encoded : ndarray of int of shape (n_samples,) or None
    """
    classifier.temperature_, classifier.threshold_, classifier.pos_label_ = 1.0, None, None
    classifier.temperature_fitted_ = classifier.calibration == "temperature" or (
        classifier.calibration == "auto" and proba is not None
        and too_small(np.bincount(y_encoded, minlength=len(classifier.classes_))) is None)
    if classifier.temperature_fitted_:
        classifier.temperature_ = fit_temperature(proba, y_encoded)
    if classifier.target_sensitivity is not None:
        classes = classifier.classes_
        proba = scale(proba, classifier.temperature_)
        y_true = classes[y_encoded]
        pos_label = resolve_pos_label(y_true, classes[proba.argmax(axis=1)])
        column = classes.tolist().index(pos_label)
        point = specificity_at_sensitivity(y_true, proba[:, column], classifier.target_sensitivity,
                                           pos_label=pos_label)
        classifier.threshold_ = float(min(point.threshold, 1.0))
        classifier.pos_label_ = pos_label


def refit_decision(model, proba, y):
    """Refit a fitted model's temperature and threshold on other held-out probabilities.

    ``fit`` fits them on its own validation split; out-of-fold probabilities
    of a cross-validation cover every training image instead (what
    scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` fits on).

    Parameters
    ----------
    model : fitted classifier, Pipeline, search or pruned model
    proba : ndarray of shape (n_samples, n_classes)
        Probabilities at temperature 1 (:func:`raw_proba`) of images the
        models that gave them did not train on; columns follow ``classes_``.
    y : array-like of shape (n_samples,)
        Their labels.

    Returns
    -------
    refitted : bool
        False when the model has neither ``calibration`` nor
        ``target_sensitivity``, and nothing was changed.
    """
    owner = owner_of(model)
    if getattr(owner, "calibration", None) is None and getattr(owner, "target_sensitivity", None) is None:
        return False
    classes = owner.classes_
    y = np.asarray(y)
    unknown = np.setdiff1d(y, classes)
    if len(unknown) or proba.shape != (len(y), len(classes)):
        raise ValueError(f"refit_decision needs probabilities of shape ({len(y)}, {len(classes)}) and labels "
                         f"among {classes.tolist()}; got shape {proba.shape} and labels {unknown.tolist()}.")
    fit_decision(owner, proba, np.searchsorted(classes, y))
    return True


def raw_proba(model, X):
    """``predict_proba`` of a fitted model at temperature 1, before its calibration.

    Parameters
    ----------
    model : fitted classifier, Pipeline, search or pruned model
    X : array-like
        Images in any form ``fit`` accepts.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
    """
    if getattr(owner_of(model), "temperature_", None) is None:
        return model.predict_proba(X)
    # A shallow copy at temperature 1 predicts: the model itself is never changed, so threads predicting
    # with it at the same time see its own temperature.
    return _at_temperature_one(model).predict_proba(X)


def _at_temperature_one(model):
    """A shallow copy of ``model`` (and of the path down to its owner) whose owner has temperature 1."""
    out = copy.copy(model)
    if hasattr(model, "best_estimator_"):
        out.best_estimator_ = _at_temperature_one(model.best_estimator_)
    elif hasattr(model, "steps"):
        name, last = model.steps[-1]
        out.steps = [*model.steps[:-1], (name, _at_temperature_one(last))]
    elif hasattr(getattr(model, "estimator_", None), "temperature_"):
        out.estimator_ = _at_temperature_one(model.estimator_)
    else:
        out.temperature_ = 1.0
    return out


def out_of_fold_proba(models, test_folds, X):
    """Each image's probabilities at temperature 1 from the fold model that did not train on it.

    Parameters
    ----------
    models : list of fitted classifiers
        One per fold, of the same ``classes_``.
    test_folds : list of ndarray of int
        The images each model was scored on; together, every image once.
    X : ndarray of shape (n_samples,)
        The images.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Columns follow the models' ``classes_``.
    """
    proba = np.zeros((len(X), len(models[0].classes_)))
    for model, test in zip(models, test_folds):
        proba[test] = raw_proba(model, X[test])
    return proba


def decision_of(model):
    """``(threshold_, pos_label_)`` of a fitted classifier, Pipeline, search or ONNX model, else ``(None, None)``."""
    owner = owner_of(model)
    return getattr(owner, "threshold_", None), getattr(owner, "pos_label_", None)


def temperature_of(model):
    """The ``temperature_`` of a model that fitted one (``temperature_fitted_``), else None.

    ``calibration="auto"`` leaves the temperature at 1, unfitted, where no
    validation split could be trusted: no report calls that one fitted.
    Models saved before ``temperature_fitted_`` existed had a temperature
    fitted when they had a ``calibration`` and, under ``"auto"``, a
    temperature other than exactly 1 (a fitted one is where a search
    stopped).
    """
    owner = owner_of(model)
    calibration, temperature = getattr(owner, "calibration", None), getattr(owner, "temperature_", None)
    fitted = getattr(owner, "temperature_fitted_", None)
    if fitted is None:  # saved before temperature_fitted_
        fitted = calibration is not None and not (calibration == "auto" and temperature == 1.0)
    return temperature if fitted else None


def _fitted_on_validation(classifier):
    """The settings of ``classifier`` asked for explicitly that are fitted on its validation split."""
    return [name for name, on in (("calibration='temperature'", classifier.calibration == "temperature"),
                                  (f"target_sensitivity={classifier.target_sensitivity}",
                                   classifier.target_sensitivity is not None)) if on]


def needs_validation(classifier):
    """Whether ``classifier`` asks for something fitted on a validation split (a temperature, a threshold)."""
    return bool(_fitted_on_validation(classifier))


def validation_check(classifier, validation_fraction, y):
    """Refuse, before training, a calibration or threshold that would have no validation split; warn of a small one.

    Parameters
    ----------
    classifier : TransferCNNClassifier
        Reads ``early_stopping``, ``calibration``, ``target_sensitivity``,
        ``validation_fraction`` and ``classes_``.
    validation_fraction : float or None
        Resolved (:func:`skcovid._engine.validation.resolve_validation`).
    y : ndarray of shape (n_samples,)
        The training labels.

    Raises
    ------
    ValueError
        When ``calibration="temperature"`` or a ``target_sensitivity`` has no
        validation split to be fitted on, or a target sensitivity more than
        two classes.

    Warns
    -----
    UserWarning
        When the validation split will be too small to trust (:func:`too_small`)
        and early stopping, a temperature or a threshold asked for explicitly
        relies on it. Settings left to ``"auto"`` adapt without a warning:
        the estimator's ``temperature_fitted_`` and ``history_`` say what they
        did, and ``skcovid train`` prints it.
    """
    wanted = _fitted_on_validation(classifier)
    if wanted and validation_fraction is None:
        raise ValueError(f"{' and '.join(wanted)} is fitted on the validation split, but there is none "
                         f"(validation_fraction={classifier.validation_fraction!r}); set "
                         "validation_fraction to a fraction such as 0.2.")
    if validation_fraction is not None and (
            why := too_small(expected_validation_counts(y, validation_fraction))) is not None:
        # Only what the user asked for: settings left to "auto" adapt to the split without a word.
        instead = []
        if classifier.early_stopping not in ("auto", None):
            instead.append(f"early stopping (patience {classifier.early_stopping}) watches it as asked")
        if classifier.calibration == "temperature":
            instead.append("the temperature is fitted on it as asked")
        if classifier.target_sensitivity is not None:
            instead.append("the threshold of target_sensitivity is chosen on it as asked")
        if instead:
            warnings.warn(f"The validation split is too small for early stopping, a temperature or a threshold: "
                          f"{why}; {'; '.join(instead)}. Give fit more images, or a larger "
                          "validation_fraction.", UserWarning, stacklevel=4)
    if classifier.target_sensitivity is not None and len(classifier.classes_) != 2:
        raise ValueError(f"target_sensitivity needs two classes; got {len(classifier.classes_)}: "
                         f"{classifier.classes_.tolist()}.")
