"""The training engine both estimators share: from a module factory and settings to a fitted skorch net.

:func:`fit_network` takes a module factory, the data and the training
settings (:class:`~skcovid._engine.settings.TrainingSettings`) and does
everything between them and a fitted skorch net: the validation split, the
datasets and loaders, precomputed and cached backbone features, the skorch
net and its callbacks, checkpoints and BatchNorm re-estimation.
:mod:`skcovid._engine.inference` runs a fitted net on images.
"""

import copy
import os
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils.validation import check_memory
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from skcovid._engine.accelerated import AcceleratedNet
from skcovid._engine.checkpoint import Checkpointer, load_checkpoint, restore
from skcovid._engine.data import DecodedCache, ImageDataset, inference_loader, make_augmentation
from skcovid._engine.features import FeatureCache, backbone_features, feature_key
from skcovid._engine.fingerprint import fingerprint
from skcovid._engine.net import (
    SkorchNet,
    batches_per_epoch,
    history_records,
    rebuilt_net,
    resolve_device,
    resolve_optimizer,
    silent,
    training_callbacks,
)
from skcovid._engine.validation import validation_split
from skcovid._nets.backbones import stage_names
from skcovid._nets.network import eval_mode

#: Training images the BatchNorm statistics are re-estimated on after training.
N_BATCHNORM_IMAGES = 512

@dataclass(frozen=True)
class FittedNetwork:
    """What :func:`fit_network` returns.

    Attributes
    ----------
    net : SkorchNet
        Predicts with the whole network, on images.
    history : list of dict
        Per-epoch records (see :func:`skcovid._engine.net.history_records`).
    train_indices : ndarray of int
        The samples trained on (the rest were the validation set).
    """

    net: SkorchNet
    history: list
    train_indices: np.ndarray


def memory_store(memory):
    """``memory`` as a joblib.Memory (a folder path, str or not, gives the same store)."""
    return check_memory(os.fspath(memory) if isinstance(memory, os.PathLike) else memory)


def _device(settings):
    accelerator = settings.accelerator
    if accelerator is None:
        return resolve_device(settings.device)
    # "cpu", not accelerate's "cpu:0", which torch.load cannot map to
    return "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)


def _features(module, images, settings, device):
    """The frozen backbone's pooled output for every image (through ``memory`` if set)."""
    kwargs = dict(batch_size=settings.batch_size, device=device,
                  precision=settings.precision, num_workers=settings.num_workers)
    cache = feature_cache(settings)
    compute = backbone_features if cache is None else cache
    return compute(module, images, settings.image_size, **kwargs)


def feature_cache(settings):
    """The :class:`FeatureCache` that ``settings.memory`` asks for, or None."""
    memory = memory_store(settings.memory)
    return None if memory.location is None else FeatureCache(memory, feature_key(settings.params()))


def fit_network(build_module, images, y, y_encoded, classes, settings, *, groups=None, split=None,
                precompute=False, extra_callbacks=(), training_loss=None):
    """Train the module ``build_module()`` returns.

    Parameters
    ----------
    build_module : callable
        Returns the ``TransferNet`` to train; called under the fit's seed.
    images : PathImages or ArrayImages
    y : ndarray of shape (n_samples,)
        Labels (for ``class_weight``).
    y_encoded : ndarray of int of shape (n_samples,)
    classes : ndarray of shape (n_classes,)
    settings : TrainingSettings
        A :class:`skcovid.TransferCNNClassifier`'s parameters, with
        ``validation_fraction`` and ``early_stopping`` resolved
        (:func:`resolve_validation`).
    groups : ndarray of shape (n_samples,) or None, default=None
        The patient of each sample: the validation split keeps each patient
        on one side.
    split : (ndarray, ndarray or None) or None, default=None
        The training and validation indices to use instead of drawing them
        (a pruned fine-tuning carries its estimator's split forward); the
        seed of the fit is drawn as if they had been drawn.
    precompute : bool, default=False
        Run the frozen backbone once and train only the head, on its outputs;
        the returned net still holds (and predicts with) the whole network.
    extra_callbacks : sequence of skorch callbacks, default=()
    training_loss : object or None, default=None
        The loss of training batches in place of the criterion (the
        ``training_loss`` of :class:`skcovid._engine.net.SkorchNet`); its
        ``inputs(train_set)`` gives the dataset to train on, e.g. with
        per-image targets added to the inputs. The returned net does not
        hold it.

    Returns
    -------
    fitted : FittedNetwork
    """
    rng = check_random_state(settings.random_state)
    train_idx, valid_idx = validation_split(y, settings.validation_fraction, rng, groups)
    if split is not None:
        train_idx, valid_idx = split
    seed = int(rng.randint(np.iinfo(np.int32).max))
    device = _device(settings)
    checkpoint_key, resume = _checkpoint(settings, y, groups, precompute)
    loader_kwargs = _loader_kwargs(settings, device)
    net_kwargs = _net_kwargs(settings, classes, y[train_idx], device)
    cuda_devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        module = build_module().to(device)
        if device.startswith("cuda"):
            module = module.to(memory_format=torch.channels_last)
        train_set, valid_set = _datasets(module, images, y_encoded, train_idx, valid_idx, settings, device,
                                         precompute)
        if training_loss is not None:
            train_set = training_loss.inputs(train_set)
        param_groups, peak_lr = ([], settings.lr) if precompute else _stage_learning_rates(
            module, settings.lr, settings.layer_decay)
        if param_groups:
            net_kwargs["optimizer__param_groups"] = param_groups
        callbacks = _callbacks(settings, peak_lr, len(train_idx), valid_set is not None, extra_callbacks,
                               checkpoint_key, resume)
        net = _trained_net(settings, net_kwargs, callbacks, module, train_set, valid_set, precompute,
                           {} if precompute else loader_kwargs, training_loss, resume)
    net = _finished_net(net, module, settings, net_kwargs, loader_kwargs, precompute)
    recalibrate_batchnorm(net.module_, images, train_idx, settings, device)
    # A fitted network is in eval mode: inference then never changes its training flag, which threads
    # predicting with one model at once would otherwise flip under each other.
    net.module_.eval()
    return FittedNetwork(net, history_records(net.history), train_idx)


def _checkpoint(settings, y, groups, precompute):
    """The key of this fit's checkpoints and the checkpoint to resume from (None, None without ``checkpoint_dir``)."""
    if settings.checkpoint_dir is None:
        return None, None
    patients = [] if groups is None else [np.asarray(groups).astype(str).tolist()]
    key = fingerprint(settings.checkpoint_params(), np.asarray(y).tolist(), len(y), precompute, *patients)
    return key, load_checkpoint(settings.checkpoint_dir, key) if settings.warm_start else None


def _loader_kwargs(settings, device):
    """DataLoader options of the image loaders: pinned memory on CUDA, worker processes if asked."""
    loader_kwargs = {"pin_memory": device.startswith("cuda")}
    if settings.num_workers:
        # Not persistent: a new iterator per epoch draws from the torch RNG
        # as without workers, so num_workers does not change the model.
        loader_kwargs["num_workers"] = settings.num_workers
    return loader_kwargs


def _net_kwargs(settings, classes, y_train, device):
    """The skorch net's arguments that training and prediction share: loss, optimizer, sizes, device."""
    optimizer, optimizer_kwargs = resolve_optimizer(settings.optimizer)
    criterion_kwargs = {}
    if settings.class_weight is not None:
        weights = compute_class_weight(settings.class_weight, classes=classes, y=y_train)
        criterion_kwargs["criterion__weight"] = torch.as_tensor(weights, dtype=torch.float32)
    if settings.label_smoothing:
        criterion_kwargs["criterion__label_smoothing"] = float(settings.label_smoothing)
    return dict(
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=optimizer,
        lr=settings.lr,
        batch_size=settings.batch_size,
        # Head-only epochs come before the max_epochs of the network that trains.
        max_epochs=settings.head_epochs + settings.max_epochs,
        iterator_train__shuffle=True,
        classes=np.arange(len(classes)),
        device=device,
        precision=settings.precision,
        channels_last=device.startswith("cuda"),
        verbose=settings.verbose,
        **{f"optimizer__{k}": v for k, v in optimizer_kwargs.items()},
        **criterion_kwargs,
    )


def _datasets(module, images, y_encoded, train_idx, valid_idx, settings, device, precompute):
    """The training and validation sets (None without one): precomputed features, or images to decode."""
    if precompute:
        features = _features(module, images, settings, device)
        return (Dataset(features[train_idx], y_encoded[train_idx]),
                None if valid_idx is None else Dataset(features[valid_idx], y_encoded[valid_idx]))
    budget = settings.image_cache_mb * 2**20
    cache = DecodedCache(budget) if budget else None
    train_set = ImageDataset(images, y_encoded, settings.image_size, make_augmentation(settings.augment),
                             train_idx, cache=cache)
    valid_set = (None if valid_idx is None else
                 ImageDataset(images, y_encoded, settings.image_size, None, valid_idx, cache=cache))
    return train_set, valid_set


def _callbacks(settings, peak_lr, n_train, has_validation, extra_callbacks, checkpoint_key, resume):
    """The training's callbacks: schedule, early stopping, the user's, a checkpointer."""
    callbacks = training_callbacks(
        lr=peak_lr, lr_schedule=settings.lr_schedule, max_epochs=settings.head_epochs + settings.max_epochs,
        batches_per_epoch=batches_per_epoch(n_train, settings.batch_size),
        early_stopping=settings.early_stopping, has_validation=has_validation,
        verbose=settings.verbose, head_epochs=settings.head_epochs,
    )
    callbacks += copy.deepcopy(list(settings.callbacks or []))
    callbacks += list(extra_callbacks)
    if checkpoint_key is not None:
        callbacks.append(("checkpoint", Checkpointer(settings.checkpoint_dir, checkpoint_key, resume)))
    return callbacks


def _trained_net(settings, net_kwargs, callbacks, module, train_set, valid_set, precompute, loader_kwargs,
                 training_loss, resume):
    """The skorch net, trained (or resumed from ``resume``) on ``train_set``: the head alone with ``precompute``."""
    accelerator = settings.accelerator
    train_kwargs = dict(
        net_kwargs, callbacks=callbacks, training_loss=training_loss,
        module=module.head if precompute else module,
        train_split=None if valid_set is None else predefined_split(valid_set),
        # The head trains on features in memory: no loader workers for it (``loader_kwargs`` is empty).
        **{f"iterator_{kind}__{k}": v for kind in ("train", "valid") for k, v in loader_kwargs.items()},
    )
    if accelerator is None:
        net = SkorchNet(**train_kwargs)
    else:  # the accelerator places the network and the batches
        net = AcceleratedNet(
            **{**train_kwargs, "device": None}, accelerator=accelerator,
            # Unwrapped below, after early stopping has put back the best
            # weights, which it saved from the wrapped module.
            unwrap_after_train=False,
            # skorch prints to any sink but print whatever the verbosity
            callbacks__print_log__sink=accelerator.print if settings.verbose else silent,
        )
    if resume is None:
        net.fit(train_set, y=None)
    else:
        net.initialize()
        restore(net, resume)  # weights, optimizer, history and the RNG where it stopped
        remaining = 0 if resume["finished"] else net_kwargs["max_epochs"] - len(net.history)
        if remaining > 0:
            net.partial_fit(train_set, y=None, epochs=remaining)
    net.training_loss = None  # it may hold what only training needs, such as a teacher network
    return net


def _finished_net(net, module, settings, net_kwargs, loader_kwargs, precompute):
    """The net that predicts: the whole network, unwrapped from an accelerator, decoding in workers if asked."""
    accelerator = settings.accelerator
    if accelerator is not None:
        # Unwrapping also takes mixed precision's forward wrappers off the module.
        trained = accelerator.unwrap_model(net.module_, keep_fp32_wrapper=False)
        # The accelerator keeps every network, optimizer and DataLoader it
        # prepared: let go of them, or every fit of a search stays in memory
        # (and in the estimator's pickle, through its accelerator parameter).
        accelerator.free_memory()
        if not precompute:
            module = trained
    if precompute or accelerator is not None:
        # With precomputed features, the net finds them in memory.
        predict_kwargs = {f"iterator_valid__{k}": v for k, v in loader_kwargs.items()}
        net = rebuilt_net(net, module, **net_kwargs, **predict_kwargs,
                          feature_cache=feature_cache(settings) if precompute else None)
    return net


def _stage_learning_rates(module, lr, layer_decay):
    """Layer-wise learning-rate decay: skorch's ``param_groups`` and the peak rate of each group.

    The head trains at ``lr``, the last backbone stage that trains at
    ``lr * layer_decay``, the one before at ``lr * layer_decay**2``, and so
    on down the network (discriminative fine-tuning, Howard and Ruder 2018).

    Returns
    -------
    param_groups : list of (str, dict)
        Empty when ``layer_decay`` is 1.
    peak_lr : float or list of float
        ``lr``, or the rate of each optimizer group (the stages' in order,
        then the head's).
    """
    if layer_decay == 1.0:
        return [], lr
    frozen = set(module.frozen_stages)
    trainable = [name for name in stage_names(module.features) if name not in frozen
                 and any(p.requires_grad for p in module.features.get_submodule(name).parameters())]
    rates = [lr * layer_decay ** (len(trainable) - i) for i in range(len(trainable))]
    # "*" before the name: an accelerator's wrapper prefixes "module.".
    groups = [(f"*features.{name}.*", {"lr": rate}) for name, rate in zip(trainable, rates)]
    return groups, [*rates, lr]


def recalibrate_batchnorm(module, images, train_indices, settings, device):
    """Re-estimate the running statistics of the BatchNorm layers that trained.

    Running statistics trail the weights: with EfficientNet's momentum of
    0.01 they still hold much of the ImageNet statistics after a short
    fine-tuning on CT slices, which skews eval-mode predictions (on the demo
    split, accuracy 0.64 before and 0.84 after). The statistics are
    recomputed, in eval mode otherwise (no dropout), on up to
    :data:`N_BATCHNORM_IMAGES` training images; frozen layers keep theirs.

    Parameters
    ----------
    module : nn.Module
    images : PathImages or ArrayImages
    train_indices : ndarray of int
    settings : TrainingSettings
        Reads ``random_state``, ``image_size`` and ``batch_size``.
    device : str
    """
    layers = [m for m in module.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
              and any(p.requires_grad for p in m.parameters())]
    if not layers:
        return
    rng = check_random_state(settings.random_state)
    chosen = np.sort(rng.choice(train_indices, min(N_BATCHNORM_IMAGES, len(train_indices)),
                                replace=False))
    loader = inference_loader(images, settings.image_size, settings.batch_size,
                              indices=chosen)
    momenta = [layer.momentum for layer in layers]
    with eval_mode(module):
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # cumulative average over all batches
            layer.train()
        try:
            with torch.no_grad():
                for x, _ in loader:
                    module(x.to(device))
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
    module.eval()


