"""What both skcovid classifiers share: targets, prediction and parameter constraints."""


import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from skcovid._core.estimator import owner as owner_of
from skcovid._core.estimator import upgraded_state
from skcovid._decision.decide import check_finite_proba, decide, scale
from skcovid._decision.fit import decision_of, fit_decision
from skcovid._decision.patients import aggregate, aggregation_of, check_groups, patient_labels
from skcovid._engine import inference
from skcovid._engine.data import check_images


def _network_proba(owner, images):
    """The probabilities ``owner``'s fitted network gives ``images``, before any temperature."""
    return inference.predict_proba(owner.net_, images, image_size=owner.image_size, batch_size=owner.batch_size,
                                   tta=owner.tta)


class BaseCNNClassifier(ClassifierMixin, BaseEstimator):
    """Targets, prediction and scoring of a classifier that owns a fitted skorch net.

    Subclasses implement ``fit``. The fitted :class:`~skcovid.TransferCNNClassifier` that owns the
    network (the estimator itself, or a pruned one's ``estimator_``: :func:`skcovid._core.estimator.owner`)
    gives the ``net_``, ``image_size``, ``batch_size``, ``window`` and patient settings inference uses.
    """

    # Under metadata routing, ``score`` scores slices unless
    # ``set_score_request(groups=True)`` asks it to score patients.
    __metadata_request__score = {"groups": False}

    def __setstate__(self, state):
        # A file saved before a parameter existed loads with the parameter's default.
        super().__setstate__(upgraded_state(type(self), state))

    def _check_data(self, X, y, *, window=None, crop=None, intensity=None, groups=None):
        """Validate ``X``, ``y`` and ``groups``; set ``classes_``.

        Returns
        -------
        images : PathImages or ArrayImages
            Read under ``window``, harmonised as ``intensity`` says, cut down as ``crop`` says.
        y : ndarray of shape (n_samples,)
        y_encoded : ndarray of int of shape (n_samples,)
        groups : ndarray of shape (n_samples,), dtype object, or None
        """
        images = check_images(self, X, reset=True, window=window, crop=crop, intensity=intensity)
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
        if groups is not None:
            groups = check_groups(groups, len(y))
        self.classes_ = encoder.classes_
        return images, y, encoder.transform(y), groups

    def _images(self, X):
        check_is_fitted(self)
        owner = owner_of(self)
        return check_images(self, X, reset=False, window=owner.window, crop=owner.crop,
                            intensity=owner.intensity)

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
        return self._predict_images(self._images(X))

    def _predict_images(self, images):
        owner = owner_of(self)
        proba = scale(_network_proba(owner, images), getattr(owner, "temperature_", 1.0))
        return check_finite_proba(proba, "The network", getattr(images, "paths", None))

    def _fit_decision(self, owner, images, y_encoded, valid_idx):
        """Fit ``owner``'s temperature and threshold on the validation images ``valid_idx``."""
        proba = None
        if (owner.calibration is not None or owner.target_sensitivity is not None) and len(valid_idx):
            proba = _network_proba(owner, images.subset(valid_idx))
        fit_decision(owner, proba, None if proba is None else y_encoded[valid_idx])

    def predict(self, X):
        """Predicted class labels.

        The most probable class; with a ``target_sensitivity``, the positive
        class wherever its probability reaches ``threshold_``.

        Parameters
        ----------
        X : array-like
            Images in any form ``fit`` accepts.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return decide(self.predict_proba(X), self.classes_, *decision_of(self))

    def predict_patients(self, X, groups):
        """One diagnosis per patient: the slices' probabilities aggregated per patient.

        The aggregation is the classifier's ``patient_aggregation`` (with
        ``patient_top_k`` and ``patient_threshold``).

        Parameters
        ----------
        X : array-like
            Slices, in any form ``fit`` accepts.
        groups : array-like of shape (n_samples,)
            The patient of each slice (for example from
            :func:`skcovid.datasets.load_dicom_folder`).

        Returns
        -------
        patients : ndarray of shape (n_patients,), dtype object
            Patient ids, sorted.
        proba : ndarray of shape (n_patients, n_classes)
            Columns follow ``classes_``; rows sum to 1.
        """
        images = self._images(X)
        groups = check_groups(groups, len(images))
        return aggregate(self._predict_images(images), groups, self.classes_, **aggregation_of(self))

    def score(self, X, y, sample_weight=None, groups=None):
        """Accuracy of the slices, or of the patients when ``groups`` is given.

        With ``groups`` (routed by scikit-learn's metadata routing when
        ``set_score_request(groups=True)`` was called), the score is the
        accuracy of :meth:`predict_patients` against each patient's label, so
        that a search over ``patient_aggregation`` compares patients.

        Parameters
        ----------
        X : array-like
            Images in any form ``fit`` accepts.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weights of the slices (slice-level score only).
        groups : array-like of shape (n_samples,) or None, default=None
            The patient of each slice.

        Returns
        -------
        score : float
        """
        if groups is None:
            return super().score(X, y, sample_weight=sample_weight)
        if sample_weight is not None:
            raise ValueError("sample_weight weighs slices; it cannot be used with a patient-level score (groups).")
        _, labels = patient_labels(y, groups)
        _, proba = self.predict_patients(X, groups)
        return float(np.mean(self.classes_[np.argmax(proba, axis=1)] == labels))
