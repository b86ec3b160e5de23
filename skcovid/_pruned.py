"""PrunedCNNClassifier: train, prune, fine-tune, as one scikit-learn estimator."""

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from . import _engine
from ._base import BaseCNNClassifier
from ._classifier import TransferCNNClassifier
from ._data import ImageDataset, check_images
from ._training import batches_per_epoch
from ._window import n_channels
from .pruning import (
    StructuredPruner,
    count_flops,
    count_nonzero_params,
    count_params,
    serialized_size,
)

#: Number of training images handed to the pruner's ``fit`` (Taylor gradients).
_N_SCORING_IMAGES = 64


class PrunedCNNClassifier(BaseCNNClassifier):
    """A CNN classifier trained, pruned and fine-tuned in :meth:`fit`.

    ``fit`` trains a clone of ``estimator`` (or uses it as fitted with
    ``prefit=True``), runs the pruning stage ``pruner`` on its network,
    fine-tunes the pruned network with the estimator's training settings, and
    records what the pruning bought.

    Parameters
    ----------
    estimator : TransferCNNClassifier or None, default=None
        The classifier to prune; ``None`` means ``TransferCNNClassifier()``.
    pruner : StructuredPruner, MagnitudePruner or None, default=None
        The pruning stage; ``None`` means ``StructuredPruner()``.
    finetune_epochs : int, default=5
        Epochs of fine-tuning after pruning (during which a polynomial
        magnitude schedule raises the sparsity); 0 skips it. Early stopping is
        off during fine-tuning so that the final sparsity is the one asked.
    finetune_lr : float, default=1e-4
        Learning rate of the fine-tuning.
    unfreeze : bool, default=True
        Fine-tune every stage, including those the estimator kept frozen:
        pruning changes what the stages feed each other, and frozen stages
        (BatchNorm statistics included) cannot adapt. BatchNorm statistics are
        then re-estimated on up to 512 training images. ``False`` keeps the
        frozen stages as they are.
    prefit : bool, default=False
        Use ``estimator`` as already fitted instead of training a clone; it is
        copied, never modified.

    Attributes
    ----------
    estimator_ : TransferCNNClassifier
        The pruned and fine-tuned classifier.
    pruner_ : pruner
        The fitted pruning stage.
    classes_ : ndarray of shape (n_classes,)
    n_params_before_, n_params_ : int
        Parameters before and after pruning.
    n_nonzero_params_ : int
        Non-zero parameters after pruning.
    sparsity_ : float
        Fraction of zero parameters after pruning.
    flops_before_, flops_ : int
        FLOPs of one image at the fitted ``image_size``, counted with
        ``torch.utils.flop_counter.FlopCounterMode``.
    model_size_bytes_before_, model_size_bytes_ : int
        Serialized size of the network (dense before; sparse tensors packed
        after, as when this estimator is pickled).
    history_ : list of dict
        Per-epoch losses and accuracies of the fine-tuning.
    n_features_in_ : int
        Only when fitted on 2-D ``(n_samples, n_features)`` arrays.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skcovid import PrunedCNNClassifier, TransferCNNClassifier
    >>> from skcovid.pruning import StructuredPruner
    >>> clf = PrunedCNNClassifier(TransferCNNClassifier(backbone="resnet34"), StructuredPruner(ratio=0.3))
    >>> search = GridSearchCV(clf, {"pruner__ratio": [0.3, 0.5], "estimator__lr": [1e-3, 1e-4]})
    """

    _parameter_constraints = {
        "estimator": [TransferCNNClassifier, None],
        "pruner": [HasMethods(["fit", "transform", "prepare_finetuning"]), None],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "unfreeze": ["boolean"],
        "prefit": ["boolean"],
    }

    def __init__(self, estimator=None, pruner=None, finetune_epochs=5, finetune_lr=1e-4,
                 unfreeze=True, prefit=False):
        self.estimator = estimator
        self.pruner = pruner
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.unfreeze = unfreeze
        self.prefit = prefit

    def _fitted_estimator(self, X, y, groups):
        if not self.prefit:
            base = TransferCNNClassifier() if self.estimator is None else self.estimator
            return clone(base).fit(X, y, groups=groups)
        if self.estimator is None:
            raise ValueError("prefit=True needs a fitted estimator.")
        check_is_fitted(self.estimator)
        return copy.deepcopy(self.estimator)

    # The estimator and the pruner validate their own parameters when fitted.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        """Train (unless ``prefit``), prune and fine-tune.

        Parameters
        ----------
        X : array-like
            Images in any form :meth:`TransferCNNClassifier.fit` accepts.
        y : array-like of shape (n_samples,)
            Class labels.
        groups : array-like of shape (n_samples,) or None, default=None
            The patient of each slice: training, fine-tuning and the images
            the pruner scores keep each patient on one side of the validation
            split. Routed by scikit-learn's metadata routing after
            ``set_fit_request(groups=True)``.

        Returns
        -------
        self : PrunedCNNClassifier
            The fitted classifier.
        """
        check_images(self, X, reset=True)
        estimator = self._fitted_estimator(X, y, groups)
        images, y, y_encoded, groups = self._check_data(X, y, window=estimator.window, groups=groups)
        if not np.array_equal(estimator.classes_, self.classes_):
            raise ValueError(
                f"The prefit estimator was fitted on classes {estimator.classes_.tolist()}, "
                f"but y has classes {self.classes_.tolist()}."
            )
        net = estimator.net_
        module = net.module_
        input_shape = (1, n_channels(estimator.window), estimator.image_size, estimator.image_size)
        self.n_params_before_ = count_params(module)
        self.flops_before_ = count_flops(module, input_shape)
        self.model_size_bytes_before_ = serialized_size(module, sparse=False)

        # Images the pruner scores and BatchNorm is recalibrated on come from
        # the training part only, never from the estimator's validation split:
        # the same split as the estimator's fit.
        validation_fraction, _ = _engine.resolve_validation(
            estimator.validation_fraction, estimator.early_stopping, y, groups=groups)
        settings = {**estimator.get_params(deep=False), "validation_fraction": validation_fraction,
                    # Early stopping is off so that the final sparsity is the one asked.
                    "early_stopping": None, "max_epochs": self.finetune_epochs,
                    "lr": self.finetune_lr, "checkpoint_dir": None}
        train_idx, _ = _engine.validation_split(
            y, validation_fraction, check_random_state(estimator.random_state), groups)
        pruner = StructuredPruner() if self.pruner is None else self.pruner
        X_score, y_score = self._sample(estimator, images, y_encoded, train_idx, _N_SCORING_IMAGES)
        self.pruner_ = clone(pruner).fit(module, X_score, y_score)
        if self.finetune_epochs > 0:
            total_steps = self.finetune_epochs * batches_per_epoch(len(train_idx),
                                                                   estimator.batch_size)
            pruned, callbacks = self.pruner_.prepare_finetuning(module, total_steps)
        else:
            pruned, callbacks = self.pruner_.transform(module), []
        if self.unfreeze:
            pruned.frozen_stages = []
            for param in pruned.parameters():
                param.requires_grad_(True)
        if self.finetune_epochs > 0:
            fitted = _engine.fit_network(lambda: pruned, images, y, y_encoded, self.classes_,
                                         settings, groups=groups, extra_callbacks=callbacks)
            net, self.history_ = fitted.net, fitted.history
        else:
            # The pruned backbone's features are not the cached ones.
            net.set_params(module=pruned, feature_cache=None)
            self.history_ = []
            if self.unfreeze:
                # Pruning shifts what every later layer sees: re-estimate the
                # BatchNorm statistics (fine-tuning does it at its end).
                _engine.recalibrate_batchnorm(pruned, images, train_idx, settings, str(net.device))
        estimator.net_ = net

        module = net.module_
        self.n_params_ = count_params(module)
        self.n_nonzero_params_ = count_nonzero_params(module)
        self.sparsity_ = 1.0 - self.n_nonzero_params_ / self.n_params_
        self.flops_ = count_flops(module, input_shape)
        self.model_size_bytes_ = serialized_size(module, sparse=True)
        self.estimator_ = estimator
        return self

    def _fitted_classifier(self):
        return self.estimator_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        estimator = TransferCNNClassifier() if self.estimator is None else self.estimator
        tags.classifier_tags.poor_score = estimator.__sklearn_tags__().classifier_tags.poor_score
        return tags

    @staticmethod
    def _sample(estimator, images, y_encoded, indices, n_max):
        """A seeded random batch of at most ``n_max`` of the given images, as tensors."""
        rng = check_random_state(estimator.random_state)
        chosen = np.sort(rng.choice(indices, min(n_max, len(indices)), replace=False))
        dataset = ImageDataset(images, y_encoded, estimator.image_size, indices=chosen)
        X = torch.stack([dataset[i][0] for i in range(len(chosen))])
        return X, torch.as_tensor(y_encoded[chosen], dtype=torch.long)

    def pruning_report(self):
        """What pruning bought, as a dict.

        Returns
        -------
        report : dict
            ``n_params_before``, ``n_params``, ``n_nonzero_params``,
            ``sparsity``, ``flops_before``, ``flops``,
            ``model_size_bytes_before``, ``model_size_bytes``, and the
            relative reductions ``params_reduction``, ``flops_reduction`` and
            ``size_reduction`` (fractions removed).
        """
        check_is_fitted(self)
        report = {
            "n_params_before": self.n_params_before_,
            "n_params": self.n_params_,
            "n_nonzero_params": self.n_nonzero_params_,
            "sparsity": self.sparsity_,
            "flops_before": self.flops_before_,
            "flops": self.flops_,
            "model_size_bytes_before": self.model_size_bytes_before_,
            "model_size_bytes": self.model_size_bytes_,
        }
        report["params_reduction"] = 1 - self.n_nonzero_params_ / self.n_params_before_
        report["flops_reduction"] = 1 - self.flops_ / self.flops_before_
        report["size_reduction"] = 1 - self.model_size_bytes_ / self.model_size_bytes_before_
        return report
