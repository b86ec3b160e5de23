"""PrunedCNNClassifier: train, prune, fine-tune, as one scikit-learn estimator."""

import copy
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.validation import check_is_fitted

from ._classifier import TransferCNNClassifier
from ._data import ImageDataset, check_images
from ._training import shallow_copy, batches_per_epoch, history_records
from .pruning import (
    StructuredPruner,
    count_flops,
    count_nonzero_params,
    count_params,
    serialized_size,
)
from .pruning._sparse import pack_module, unpack_module

#: Number of training images handed to the pruner's ``fit`` (Taylor gradients).
_N_SCORING_IMAGES = 64


class PrunedCNNClassifier(ClassifierMixin, BaseEstimator):
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

    def __init__(self, estimator=None, pruner=None, finetune_epochs=5, finetune_lr=1e-4,
                 unfreeze=True, prefit=False):
        self.estimator = estimator
        self.pruner = pruner
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.unfreeze = unfreeze
        self.prefit = prefit

    def _validate_hyperparams(self):
        if self.estimator is not None and not isinstance(self.estimator, TransferCNNClassifier):
            raise TypeError(f"estimator must be a TransferCNNClassifier; got {type(self.estimator).__name__}.")
        if self.pruner is not None and not all(
            hasattr(self.pruner, m) for m in ("fit", "transform", "prepare_finetuning")
        ):
            raise TypeError(
                f"pruner must be a skcovid.pruning pruner (fit, transform, prepare_finetuning); "
                f"got {type(self.pruner).__name__}."
            )
        check_scalar(self.finetune_epochs, "finetune_epochs", numbers.Integral, min_val=0)
        check_scalar(self.finetune_lr, "finetune_lr", numbers.Real, min_val=0.0,
                     include_boundaries="neither")
        if not isinstance(self.unfreeze, bool):
            raise ValueError(f"unfreeze must be a bool; got {self.unfreeze!r}.")
        if not isinstance(self.prefit, bool):
            raise ValueError(f"prefit must be a bool; got {self.prefit!r}.")

    def _fitted_estimator(self, X, y):
        if not self.prefit:
            base = TransferCNNClassifier() if self.estimator is None else self.estimator
            return clone(base).fit(X, y)
        if self.estimator is None:
            raise ValueError("prefit=True needs a fitted estimator.")
        check_is_fitted(self.estimator)
        return copy.deepcopy(self.estimator)

    def fit(self, X, y):
        """Train (unless ``prefit``), prune and fine-tune.

        Parameters
        ----------
        X : array-like
            Images in any form :meth:`TransferCNNClassifier.fit` accepts.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : PrunedCNNClassifier
        """
        self._validate_hyperparams()
        check_images(self, X, reset=True)
        estimator = self._fitted_estimator(X, y)
        fitted_classes = estimator.classes_
        images, y, y_encoded = estimator._check_data(X, y)
        if not np.array_equal(estimator.classes_, fitted_classes):
            raise ValueError(
                f"The prefit estimator was fitted on classes {fitted_classes.tolist()}, "
                f"but y has classes {estimator.classes_.tolist()}."
            )
        module = estimator.net_.module_
        # Pruning changes the backbone: cached features no longer describe it.
        estimator.precomputed_features_ = False
        input_shape = (1, 1, estimator.image_size, estimator.image_size)
        self.n_params_before_ = count_params(module)
        self.flops_before_ = count_flops(module, input_shape)
        self.model_size_bytes_before_ = serialized_size(module, sparse=False)

        # Images the pruner scores and BatchNorm is recalibrated on come from
        # the training part only, never from the estimator's validation split.
        train_idx, _ = estimator._split(y, check_random_state(estimator.random_state))
        pruner = StructuredPruner() if self.pruner is None else self.pruner
        X_score, y_score = self._sample(estimator, images, y_encoded, train_idx, _N_SCORING_IMAGES)
        self.pruner_ = clone(pruner).fit(module, X_score, y_score)
        if self.finetune_epochs > 0:
            n_train = len(train_idx)
            total_steps = self.finetune_epochs * batches_per_epoch(n_train, estimator.batch_size)
            pruned, callbacks = self.pruner_.prepare_finetuning(module, total_steps)
        else:
            pruned, callbacks = self.pruner_.transform(module), []
        if self.unfreeze:
            pruned.frozen_stages = []
            for param in pruned.parameters():
                param.requires_grad_(True)
        if self.finetune_epochs > 0:
            estimator.net_ = estimator._train(
                images, y, y_encoded, lambda: pruned, max_epochs=self.finetune_epochs,
                lr=self.finetune_lr, early_stopping=None, extra_callbacks=callbacks,
            )
            self.history_ = history_records(estimator.net_.history)
        else:
            estimator.net_.__dict__.update(module=pruned, module_=pruned)
            estimator.net_.initialize_optimizer()
            self.history_ = []
            if self.unfreeze:
                # Pruning shifts what every later layer sees: re-estimate the
                # BatchNorm statistics (fine-tuning does it at its end).
                estimator._recalibrate_batchnorm(pruned, images, train_idx,
                                                 str(estimator.net_.device))

        module = estimator.net_.module_
        self.n_params_ = count_params(module)
        self.n_nonzero_params_ = count_nonzero_params(module)
        self.sparsity_ = 1.0 - self.n_nonzero_params_ / self.n_params_
        self.flops_ = count_flops(module, input_shape)
        self.model_size_bytes_ = serialized_size(module, sparse=True)
        self.estimator_ = estimator
        self.classes_ = estimator.classes_
        return self

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

    def predict_proba(self, X):
        """Class probabilities of the pruned network.

        Parameters
        ----------
        X : array-like
            Images in any form :meth:`fit` accepts.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self.estimator_._predict_proba_images(check_images(self, X, reset=False))

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __getstate__(self):
        # Store mostly-zero weights as bit masks plus values (the net leaves
        # the optimizer out): a pickled pruned model is as small as its pruned
        # tensors.
        # BaseEstimator returns the live __dict__ for non-sklearn classes: copy it.
        state = dict(super().__getstate__())
        estimator = state.get("estimator_")
        if estimator is not None:
            net = shallow_copy(estimator.net_)
            packed = pack_module(net.module_)
            net.__dict__.update(module=packed["skeleton"], module_=packed["skeleton"])
            estimator = shallow_copy(estimator)
            estimator.net_ = net
            state["estimator_"] = estimator
            state["_packed_tensors"] = packed["tensors"]
        return state

    def __setstate__(self, state):
        tensors = state.pop("_packed_tensors", None)
        super().__setstate__(state)
        if tensors is not None:
            net = self.estimator_.net_
            module = unpack_module({"skeleton": net.module_, "tensors": tensors})
            net.__dict__.update(module=module, module_=module)
            net.initialize_optimizer()
