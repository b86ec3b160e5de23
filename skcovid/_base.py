"""What both skcovid classifiers share: targets, prediction and parameter constraints."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from . import _engine
from ._data import check_images


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


class BaseCNNClassifier(ClassifierMixin, BaseEstimator):
    """Targets, prediction and scoring of a classifier that owns a fitted skorch net.

    Subclasses implement ``fit`` and ``_inference``.
    """

    def _check_data(self, X, y):
        """Validate ``X`` and ``y``; set ``classes_``; return images, labels and encoded labels."""
        images = check_images(self, X, reset=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(len(images)), y)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class: "
                f"{encoder.classes_.tolist()}."
            )
        self.classes_ = encoder.classes_
        return images, y, encoder.transform(y)

    def _inference(self):
        """The fitted net with the ``image_size`` and ``batch_size`` it predicts at.

        Returns
        -------
        net : SkorchNet
        image_size, batch_size : int
        """
        raise NotImplementedError

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like
            Images in any form ``fit`` accepts.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        check_is_fitted(self)
        images = check_images(self, X, reset=False)
        net, image_size, batch_size = self._inference()
        return _engine.predict_proba(net, images, image_size=image_size, batch_size=batch_size)

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like
            Images in any form ``fit`` accepts.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
