"""PrunedCNNClassifier: train, prune, fine-tune, as one scikit-learn estimator."""

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skcovid._core.compat import HasMethods, Interval, fit_context
from skcovid._decision.fit import needs_validation, validation_check
from skcovid._engine.data import ImageDataset, check_images
from skcovid._engine.distillation import Distillation
from skcovid._engine.fit import fit_network, recalibrate_batchnorm
from skcovid._engine.net import batches_per_epoch
from skcovid._engine.settings import TrainingSettings
from skcovid._engine.validation import resolve_validation, validation_split
from skcovid._estimators.base import BaseCNNClassifier
from skcovid._estimators.classifier import TransferCNNClassifier
from skcovid._imaging.window import n_channels
from skcovid.pruning import StructuredPruner, count_flops, count_nonzero_params, count_params, serialized_size

#: Number of training images the pruner's ``fit`` scores (Taylor gradients), in batches.
_N_SCORING_IMAGES = 256


def cycle_epochs(finetune_epochs, cycles):
    """The fine-tuning epochs of each cycle: as even as can be, the later cycles taking the remainder."""
    base, extra = divmod(finetune_epochs, cycles)
    return [base + (i >= cycles - extra) for i in range(cycles)]


class PrunedCNNClassifier(BaseCNNClassifier):
    """A CNN classifier trained, pruned and fine-tuned in :meth:`fit`.

    ``fit`` trains a clone of ``estimator`` (or uses it as fitted with
    ``prefit=True``), runs the pruning stage ``pruner`` on its network,
    fine-tunes the pruned network with the estimator's training settings, and
    records what the pruning bought. With ``cycles``, it prunes and
    fine-tunes in turns, and with ``distillation_alpha`` the unpruned network
    teaches the pruned one while it fine-tunes.

    Parameters
    ----------
    estimator : TransferCNNClassifier or None, default=None
        The classifier to prune; ``None`` means ``TransferCNNClassifier()``. Its
        ``calibration`` and ``target_sensitivity`` are fitted again on the
        pruned network, on the same validation split.
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
    cycles : int, default=1
        Reach the pruner's target in this many equal steps, fine-tuning after
        each (see the pruners' ``for_cycle``: a structured pruner's channel
        ratio or FLOPs target, a magnitude pruner's sparsity). The
        ``finetune_epochs`` are spread over the cycles as evenly as possible,
        the later cycles taking the remainder (5 epochs in 2 cycles: 2, then
        3); with fewer epochs than cycles, the first cycles prune without
        fine-tuning. Each cycle's fine-tuning starts its learning-rate
        schedule afresh.
    distillation_alpha : float, default=0.0
        Weight of distillation from the unpruned network during fine-tuning,
        in ``[0, 1]``; 0 is off. Fine-tuning minimises ``alpha * T**2 *
        KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) *
        cross_entropy`` (Hinton et al. 2015), the teacher being the fitted
        unpruned network in eval mode. Its logits are computed once per
        training image when the estimator does not ``augment``, and on each
        augmented batch when it does. The validation loss stays the
        cross-entropy, and the fitted model does not hold the teacher.
    distillation_temperature : float, default=4.0
        ``T`` above, greater than 0.

    Attributes
    ----------
    estimator_ : TransferCNNClassifier
        The pruned and fine-tuned classifier.
    pruner_ : pruner
        The fitted pruning stage (of the last cycle).
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
        Per-epoch losses and accuracies of the fine-tuning, over all cycles
        (epochs numbered on from one cycle to the next).
    cycles_ : list of dict
        One per cycle: ``cycle``, ``epochs``, ``ratio`` (the channel ratio
        the cycle's structured pruner removed from the network it pruned;
        None for magnitude pruning), ``flops``, ``n_params``,
        ``n_nonzero_params`` and ``train_acc`` (the training accuracy of the
        cycle's last fine-tuning epoch; None without fine-tuning).
    n_features_in_ : int
        Only when fitted on 2-D ``(n_samples, n_features)`` arrays.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skcovid import PrunedCNNClassifier, TransferCNNClassifier
    >>> from skcovid.pruning import StructuredPruner
    >>> clf = PrunedCNNClassifier(TransferCNNClassifier(backbone="resnet34"), StructuredPruner(ratio=0.3))
    >>> search = GridSearchCV(clf, {"pruner__ratio": [0.3, 0.5], "estimator__lr": [1e-3, 1e-4]})
    >>> distilled = PrunedCNNClassifier(pruner=StructuredPruner(target_flops=0.4), finetune_epochs=8,
    ...                                 cycles=4, distillation_alpha=0.5)
    """

    _parameter_constraints = {
        "estimator": [TransferCNNClassifier, None],
        "pruner": [HasMethods(["fit", "transform", "prepare_finetuning"]), None],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "unfreeze": ["boolean"],
        "prefit": ["boolean"],
        "cycles": [Interval(Integral, 1, None, closed="left")],
        "distillation_alpha": [Interval(Real, 0, 1, closed="both")],
        "distillation_temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, estimator=None, pruner=None, finetune_epochs=5, finetune_lr=1e-4,
                 unfreeze=True, prefit=False, cycles=1, distillation_alpha=0.0,
                 distillation_temperature=4.0):
        self.estimator = estimator
        self.pruner = pruner
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.unfreeze = unfreeze
        self.prefit = prefit
        self.cycles = cycles
        self.distillation_alpha = distillation_alpha
        self.distillation_temperature = distillation_temperature

    def _fitted_estimator(self, X, y, groups):
        if not self.prefit:
            base = TransferCNNClassifier() if self.estimator is None else self.estimator
            return clone(base).fit(X, y, groups=groups)
        if self.estimator is None:
            raise ValueError("prefit=True needs a fitted estimator.")
        check_is_fitted(self.estimator)
        return copy.deepcopy(self.estimator)

    # The estimator and the pruner validate their own parameters when fitted.
    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        """Train (unless ``prefit``), then prune and fine-tune in ``cycles``.

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
        pruner = StructuredPruner() if self.pruner is None else self.pruner
        if self.cycles > 1 and not hasattr(pruner, "for_cycle"):
            raise ValueError(f"cycles={self.cycles} needs a pruner with a for_cycle method, as "
                             f"skcovid's pruners have; {type(pruner).__name__} has none.")
        check_images(self, X, reset=True)
        estimator = self._fitted_estimator(X, y, groups)
        images, y, y_encoded, groups = self._check_data(X, y, window=estimator.window, crop=estimator.crop,
                                                        intensity=estimator.intensity, groups=groups)
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
        validation_fraction, _ = resolve_validation(
            estimator.validation_fraction, estimator.early_stopping, y, groups=groups,
            needed=needs_validation(estimator))
        settings = TrainingSettings.from_params(
            estimator.get_params(deep=False), validation_fraction=validation_fraction,
            # Early stopping is off so that the final sparsity is the one asked.
            early_stopping=None, lr=self.finetune_lr, checkpoint_dir=None,
            # The head was trained with the network: no head-only epochs.
            head_epochs=0)
        validation_check(estimator, validation_fraction, y)
        train_idx, valid_idx = self._estimator_split(estimator, y, validation_fraction, groups)
        data = (images, y, y_encoded, groups, (train_idx, valid_idx))
        scoring = self._scoring_batches(estimator, images, y_encoded, train_idx)
        loss = None
        if self.distillation_alpha > 0 and self.finetune_epochs > 0:
            loss = Distillation(module, alpha=self.distillation_alpha, images=images, settings=settings,
                                temperature=self.distillation_temperature)
        self.history_, self.cycles_ = [], []
        flops = self.flops_before_
        for cycle, epochs in enumerate(cycle_epochs(self.finetune_epochs, self.cycles), start=1):
            stage = pruner if self.cycles == 1 else pruner.for_cycle(
                cycle, self.cycles, flops_kept=flops / self.flops_before_)
            self.pruner_ = clone(stage).fit(module, scoring)
            net, history = self._prune_and_finetune(net, module, data, settings.replace(max_epochs=epochs), loss)
            module = net.module_
            flops = count_flops(module, input_shape)
            self.history_ += [{**record, "epoch": len(self.history_) + i}
                              for i, record in enumerate(history, start=1)]
            self.cycles_.append({
                "cycle": cycle, "epochs": epochs, "ratio": getattr(self.pruner_, "ratio_", None),
                "flops": flops, "n_params": count_params(module),
                "n_nonzero_params": count_nonzero_params(module),
                "train_acc": history[-1].get("train_acc") if history else None})
        estimator.net_ = net
        # The estimator's temperature and threshold were fitted to the unpruned network.
        self._fit_decision(estimator, images, y_encoded, np.setdiff1d(np.arange(len(y)), train_idx))

        # The last cycle measured the network as it is now.
        last = self.cycles_[-1]
        self.n_params_, self.n_nonzero_params_, self.flops_ = last["n_params"], last["n_nonzero_params"], flops
        self.sparsity_ = 1.0 - self.n_nonzero_params_ / self.n_params_
        self.model_size_bytes_ = serialized_size(module, sparse=True)
        self.estimator_ = estimator
        return self

    @staticmethod
    def _estimator_split(estimator, y, validation_fraction, groups):
        """The training and validation indices of the estimator's own fit, carried forward.

        ``validation_indices_`` when the estimator has them for these samples;
        an estimator fitted by skcovid 0.1 has not, and its split is drawn again
        from its ``random_state`` (the same split only for an int seed).
        """
        held_out = getattr(estimator, "validation_indices_", None)
        if held_out is not None and (len(held_out) == 0 or held_out.max() < len(y)):
            train_idx = np.setdiff1d(np.arange(len(y)), held_out)
            return train_idx, (held_out if len(held_out) else None)
        return validation_split(y, validation_fraction, check_random_state(estimator.random_state), groups)

    def _prune_and_finetune(self, net, module, data, settings, loss):
        """One cycle: ``pruner_`` prunes ``module``, then it fine-tunes; returns the net and its history."""
        images, y, y_encoded, groups, split = data
        train_idx = split[0]
        epochs = settings.max_epochs
        if epochs > 0:
            total_steps = epochs * batches_per_epoch(len(train_idx), settings.batch_size)
            pruned, callbacks = self.pruner_.prepare_finetuning(module, total_steps)
        else:
            pruned, callbacks = self.pruner_.transform(module), []
        if self.unfreeze:
            pruned.frozen_stages = []
            for param in pruned.parameters():
                param.requires_grad_(True)
        if epochs > 0:
            fitted = fit_network(lambda: pruned, images, y, y_encoded, self.classes_, settings, split=split,
                                 groups=groups, extra_callbacks=callbacks, training_loss=loss)
            return fitted.net, fitted.history
        # The pruned backbone's features are not the cached ones.
        net.set_params(module=pruned, feature_cache=None)
        if self.unfreeze:
            # Pruning shifts what every later layer sees: re-estimate the
            # BatchNorm statistics (fine-tuning does it at its end).
            recalibrate_batchnorm(pruned, images, train_idx, settings, str(net.device))
        return net, []

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        estimator = TransferCNNClassifier() if self.estimator is None else self.estimator
        tags.classifier_tags.poor_score = estimator.__sklearn_tags__().classifier_tags.poor_score
        return tags

    @staticmethod
    def _scoring_batches(estimator, images, y_encoded, indices):
        """A seeded random sample of at most ``_N_SCORING_IMAGES`` of the given images, in batches."""
        rng = check_random_state(estimator.random_state)
        chosen = np.sort(rng.choice(indices, min(_N_SCORING_IMAGES, len(indices)), replace=False))
        dataset = ImageDataset(images, y_encoded, estimator.image_size, indices=chosen)
        # Its own generator: iterating leaves the global torch RNG alone.
        return torch.utils.data.DataLoader(dataset, batch_size=estimator.batch_size,
                                           generator=torch.Generator())

    def pruning_report(self):
        """What pruning bought, as a dict.

        Returns
        -------
        report : dict
            ``n_params_before``, ``n_params``, ``n_nonzero_params``,
            ``sparsity``, ``flops_before``, ``flops``,
            ``model_size_bytes_before``, ``model_size_bytes``, the relative
            reductions ``params_reduction``, ``flops_reduction`` and
            ``size_reduction`` (fractions removed), ``flops_kept`` (the
            fraction kept), ``ratio`` (the fraction of channels structured
            pruning removed, over all cycles; None for magnitude pruning)
            and ``cycles`` (see ``cycles_``).
        """
        check_is_fitted(self)
        # A model saved before cycles existed has no record of them (and pruned in one step).
        cycles = [dict(c) for c in vars(self).get("cycles_", [])]
        ratios = [c["ratio"] for c in cycles] if cycles else [getattr(self.pruner_, "ratio", None)]
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
        report["flops_kept"] = self.flops_ / self.flops_before_
        report["ratio"] = (None if None in ratios else ratios[0] if len(ratios) == 1
                           else 1 - math.prod(1 - r for r in ratios))
        report["cycles"] = cycles
        return report
