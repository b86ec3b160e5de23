"""skorch pieces used by the estimators: the net, optimizers, schedules."""

import contextlib
import ctypes
import ctypes.util
import functools
import math
import numbers
from collections.abc import Mapping

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch.optim.lr_scheduler import CosineAnnealingLR, CyclicLR, OneCycleLR, SequentialLR

from skcovid._nets.backbones import stage_names
from skcovid._nets.sparse import pack_module, unpack_module

OPTIMIZERS = {
    "adam": (torch.optim.Adam, {}),
    "adamax": (torch.optim.Adamax, {}),
    "adamw": (torch.optim.AdamW, {}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
}
LR_SCHEDULES = (None, "cyclic", "onecycle", "cosine")
#: Autocast dtype of each ``precision``.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    """The :func:`torch.autocast` context a ``precision`` asks for on ``device`` (none for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def shallow_copy(obj):
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def _without_scheduler(callback):
    """A callback, or ``(name, callback)``, without its fitted LR scheduler (which holds the optimizer)."""
    if isinstance(callback, tuple):
        name, callback = callback
        return name, _without_scheduler(callback)
    if getattr(callback, "lr_scheduler_", None) is None:
        return callback
    callback = shallow_copy(callback)
    callback.lr_scheduler_ = None
    return callback


class SkorchNet(NeuralNetClassifier):
    """skorch classifier that hands only trainable parameters to the optimizer.

    ``precision="bf16"`` or ``"fp16"`` runs forward passes under
    :func:`torch.autocast` (fp16 with a gradient scaler); ``channels_last``
    feeds 4-D batches in that memory format. Batches move to the device with
    non-blocking copies, and evaluation runs under :func:`torch.inference_mode`.
    ``feature_cache`` (a :class:`skcovid._engine.features.FeatureCache`) holds the
    frozen backbone's features of this net's module, for prediction.

    ``training_loss``, when set, replaces the criterion on training batches
    (validation batches keep it): ``training_loss(net, y_pred, y_true, X)``
    gives a batch's loss. It may need more than the images: training inputs
    may be dicts ``{"x": images, ...}``, of which the module gets ``x`` and
    the loss the rest. :func:`skcovid._engine.fit.fit_network` sets it during
    training only, so that a fitted net does not hold it.

    Pickles hold what prediction needs. The optimizer, whose state is twice
    the trainable parameters, and the LR schedulers that refer to it are left
    out; unpickling starts a fresh optimizer. Parameters that are mostly zero
    (magnitude pruning) are stored as bit masks plus their non-zero values,
    so a pickled pruned model is as small as its pruned tensors.
    """

    def __init__(self, *args, precision="fp32", channels_last=False, feature_cache=None,
                 training_loss=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.precision = precision
        self.channels_last = channels_last
        self.feature_cache = feature_cache
        self.training_loss = training_loss

    def __getstate__(self):
        net = shallow_copy(self)
        net.optimizer_ = None
        net.callbacks = [_without_scheduler(cb) for cb in self.callbacks or []] or self.callbacks
        net.callbacks_ = [_without_scheduler(cb) for cb in vars(self).get("callbacks_", [])]
        tensors = {}
        module = vars(self).get("module_")
        if isinstance(module, torch.nn.Module):
            skeleton, tensors = pack_module(module)
            net.module_ = skeleton
            if self.module is module:
                net.module = skeleton
        state = NeuralNetClassifier.__getstate__(net)
        if tensors:
            state["_packed_tensors"] = tensors
        return state

    def __setstate__(self, state):
        tensors = state.pop("_packed_tensors", None)
        state.setdefault("training_loss", None)  # a net pickled before the parameter existed
        super().__setstate__(state)
        if tensors:
            unpack_module(self.module_, tensors)
        if getattr(self, "initialized_", False) and vars(self).get("optimizer_") is None:
            self.initialize_optimizer()

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param

    def initialize(self):
        super().initialize()
        device_type = torch.device(self.device).type
        self.grad_scaler_ = (torch.amp.GradScaler(device_type) if self.precision == "fp16"
                             else None)
        return self

    def infer(self, x, **fit_params):
        if isinstance(x, Mapping):  # a training loss's inputs: the images and what the loss reads
            x = x["x"]
        if isinstance(x, torch.Tensor):
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            out = super().infer(x, **fit_params)
        return out.float()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if training and self.training_loss is not None:
            return self.training_loss(self, y_pred, to_tensor(y_true, device=self.device), X)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def evaluation_step(self, batch, training=False):
        if training:
            return super().evaluation_step(batch, training=True)
        self.check_is_fitted()
        Xi, _ = unpack_data(batch)
        with torch.inference_mode():
            self._set_training(False)
            return self.infer(Xi)

    def train_step_single(self, batch, **fit_params):
        scaler = vars(self).get("grad_scaler_")
        if scaler is None:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler.scale(loss).backward()
        return {"loss": loss, "y_pred": y_pred}

    def _step_optimizer(self, step_fn):
        scaler = vars(self).get("grad_scaler_")
        if scaler is None or step_fn is None:
            return super()._step_optimizer(step_fn)
        step_fn()  # zero_grad, forward, scaled backward
        for name in self._optimizers:
            scaler.step(getattr(self, name + "_"))
        scaler.update()


def rebuilt_net(trained, module, **kwargs):
    """A plain :class:`SkorchNet` around ``module`` that carries ``trained``'s result.

    The history and the (trained) callbacks of ``trained`` carry over; the
    optimizer is fresh. Used when the net that trained is not the one that
    predicts: a head trained on precomputed features, or a net trained
    through an accelerator, whose module is unwrapped first.

    Parameters
    ----------
    trained : SkorchNet
    module : nn.Module
    **kwargs
        The parameters of the new net.

    Returns
    -------
    net : SkorchNet
    """
    # Without callbacks: initialize() would reset the trained ones, shared with the old net.
    net = SkorchNet(**{**kwargs, "module": module, "callbacks": []}).initialize()
    net.callbacks, net.callbacks_ = trained.callbacks, trained.callbacks_
    net.history = trained.history
    return net


def resolve_optimizer(optimizer):
    """Return ``(optimizer class, extra kwargs)`` for a name or class."""
    if isinstance(optimizer, str):
        return OPTIMIZERS[optimizer]
    return optimizer, {}


#: The kinds of torch device a network trains and predicts on ("meta" and the like hold no data).
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device):
    """Map ``"auto"`` to CUDA when present, else CPU; check other names (:data:`DEVICE_TYPES`)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from exc
    if kind not in DEVICE_TYPES:
        raise ValueError(f"device={device!r} is a {kind!r} device, which holds no data to train or predict on; "
                         f"use one of {list(DEVICE_TYPES)}.")
    return device


def is_device(device):
    """Whether ``device`` is ``"auto"`` or a device name :func:`resolve_device` takes as it is."""
    try:
        return isinstance(device, str) and resolve_device(device) in ("cuda", "cpu", device)
    except ValueError:
        return False


class TrainAccuracy(Callback):
    """Accuracy on each epoch's training batches, recorded as ``train_acc``.

    The same figure as skorch's ``EpochScoring("accuracy", on_train=True)``,
    from counts kept batch by batch. EpochScoring keeps every training batch's
    predictions until the epoch ends; those small tensors, allocated among the
    large activations of fine-tuning, kept glibc from reusing freed memory,
    and the process grew with the number of batches (one epoch of fine-tuning
    on 2481 slices peaked 532 MB above one on 500; 2.6 MB with this callback;
    ``python benchmarks/bench_memory.py``).
    """

    def on_epoch_begin(self, net, **kwargs):
        self.correct_, self.total_ = 0, 0

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        if training:
            _, y_true = unpack_data(batch)
            y_true = torch.as_tensor(y_true).to(y_pred.device)
            self.correct_ += int((y_pred.argmax(dim=1) == y_true).sum())
            self.total_ += len(y_true)

    def on_epoch_end(self, net, **kwargs):
        if self.total_:
            net.history.record("train_acc", self.correct_ / self.total_)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class ReleaseFreedMemory(Callback):
    """Give the memory freed by each training batch back to the operating system (glibc).

    A batch frees its activations when it ends, but glibc keeps freed heap
    memory for reuse, and what it keeps grew with the number of batches:
    fine-tuning at 224 px, peak RSS grew by 282 MB from 500 to 2481 slices,
    and by 33 MB with ``malloc_trim(0)`` after each batch, which returns the
    free pages (``benchmarks/bench_memory.py``, docs/benchmarks.md). Where the
    C library has no ``malloc_trim`` this does nothing.
    """

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        trim = _malloc_trim()
        if training and trim is not None:
            trim(0)


class HeadFirst(Callback):
    """Train the new head alone for the first ``epochs`` epochs, then the stages ``freeze`` leaves trainable.

    fastai's ``fine_tune`` (Howard and Gugger 2020): the randomly initialised
    head learns on fixed pretrained features first, so that its large early
    gradients do not disturb them. Meanwhile every backbone stage is held as
    :class:`skcovid._nets.network.TransferNet` holds frozen stages (no gradients,
    BatchNorm statistics fixed). The optimizer holds from the start every
    parameter that trains later and skips those without gradients.

    Parameters
    ----------
    epochs : int
    """

    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_begin(self, net, **kwargs):
        self.frozen_ = list(net.module_.frozen_stages)
        self._hold(net, len(net.history) < self.epochs)  # a resumed fit may be past the head epochs

    def on_epoch_begin(self, net, **kwargs):
        self._hold(net, len(net.history) <= self.epochs)  # the history counts the epoch beginning

    def on_train_end(self, net, **kwargs):
        self._hold(net, False)

    def _hold(self, net, head_only):
        module = net.module_
        module.set_frozen_stages(stage_names(module.features) if head_only else self.frozen_)


def _scheduler(optimizer, kind, peak_lr, epochs, batches_per_epoch, last_epoch=-1):
    """One phase's scheduler: ``kind`` over ``epochs`` epochs, peaking at ``peak_lr`` (a float or one per group)."""
    if kind == "cyclic":
        # Triangular cycles between lr/10 and lr, 2 epochs up and 2 down
        # (Smith 2017 suggests a half cycle of 2 to 10 epochs).
        base = [lr / 10 for lr in peak_lr] if isinstance(peak_lr, list) else peak_lr / 10
        return CyclicLR(optimizer, base_lr=base, max_lr=peak_lr, step_size_up=2 * batches_per_epoch,
                        cycle_momentum=False, last_epoch=last_epoch)
    if kind == "onecycle":
        return OneCycleLR(optimizer, max_lr=peak_lr, total_steps=epochs * batches_per_epoch,
                          cycle_momentum=False, last_epoch=last_epoch)
    return CosineAnnealingLR(optimizer, T_max=epochs, last_epoch=last_epoch)


def phased_scheduler(optimizer, *, kind, peak_lr, phase_epochs, batches_per_epoch, last_epoch=-1):
    """The learning-rate scheduler of ``lr_schedule=kind``, restarted at each training phase.

    With head-first epochs (:class:`HeadFirst`) the head's phase and the
    whole network's phase each get their own schedule, as fastai's
    ``fine_tune`` gives each its own one-cycle. skorch's
    :class:`~skorch.callbacks.LRScheduler` calls this with the optimizer.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    kind : {"cyclic", "onecycle", "cosine"}
    peak_lr : float or list of float
        The highest rate, or one per parameter group.
    phase_epochs : tuple of int
        Epochs of each phase.
    batches_per_epoch : int
    last_epoch : int, default=-1
        Passed on (skorch sets it) with one phase; a resumed fit with phases
        loads the scheduler's state instead (:mod:`skcovid._engine.checkpoint`).

    Returns
    -------
    scheduler : torch.optim.lr_scheduler.LRScheduler
    """
    if len(phase_epochs) == 1:
        return _scheduler(optimizer, kind, peak_lr, phase_epochs[0], batches_per_epoch, last_epoch)
    phases = [_scheduler(optimizer, kind, peak_lr, epochs, batches_per_epoch) for epochs in phase_epochs]
    per = 1 if kind == "cosine" else batches_per_epoch
    milestones = [sum(phase_epochs[:i]) * per for i in range(1, len(phase_epochs))]
    return SequentialLR(optimizer, phases, milestones)


class FiniteLoss(Callback):
    """Stop training with a clear error when a batch's loss is NaN or infinite (it never recovers from one)."""

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        loss = kwargs.get("loss")
        if training and loss is not None and not bool(torch.isfinite(torch.as_tensor(loss)).all()):
            epoch, value = len(net.history), float(torch.as_tensor(loss).detach())
            raise FloatingPointError(
                f"The training loss became {value} in epoch {epoch}: a learning rate too high "
                f"(lr={net.lr}), or images or weights holding NaN or infinity. Training stopped; no model "
                "was fitted.")


class PhasedEarlyStopping(EarlyStopping):
    """skorch's ``EarlyStopping`` that watches only the epochs after ``start_epoch``.

    A recipe's head-only epochs (``head_epochs``) end with the pretrained
    backbone untouched and the validation loss often at its lowest, since
    the whole network's first epochs raise it before they lower it: early
    stopping that counted them restored a barely trained head whenever a
    small validation split said so. The epochs up to ``start_epoch`` are
    neither candidates for the best weights nor misses of the patience.

    Parameters
    ----------
    monitor, patience, threshold, threshold_mode, lower_is_better, sink, load_best
        As for :class:`skorch.callbacks.EarlyStopping`.
    start_epoch : int, default=0
        The last epoch not watched.
    """

    def __init__(self, monitor="valid_loss", patience=5, threshold=1e-4, threshold_mode="rel",
                 lower_is_better=True, sink=print, load_best=False, start_epoch=0):
        super().__init__(monitor=monitor, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
                         lower_is_better=lower_is_better, sink=sink, load_best=load_best)
        self.start_epoch = start_epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) > self.start_epoch:
            super().on_epoch_end(net, **kwargs)


def training_callbacks(*, lr, lr_schedule, max_epochs, batches_per_epoch, early_stopping,
                       has_validation, verbose, head_epochs=0):
    """The callbacks an estimator's hyperparameters ask for.

    Parameters
    ----------
    lr : float or list of float
        Peak learning rate of the schedules, or one per parameter group.
    lr_schedule : {None, "cyclic", "onecycle", "cosine"}
    max_epochs, batches_per_epoch : int
        ``max_epochs`` counts all epochs, ``head_epochs`` included.
    early_stopping : int or None
        Patience in epochs on the validation loss; the best weights are restored.
    has_validation : bool
    verbose : int
    head_epochs : int, default=0
        The first epochs, that train the head alone (:class:`HeadFirst`); the
        schedule restarts when the backbone joins.

    Returns
    -------
    callbacks : list of (str, Callback)
    """
    callbacks = [("train_acc", TrainAccuracy()), ("release_freed_memory", ReleaseFreedMemory()),
                 ("finite_loss", FiniteLoss())]
    if head_epochs:
        callbacks.append(("head_first", HeadFirst(head_epochs)))
    if lr_schedule is not None:
        phases = (head_epochs, max_epochs - head_epochs) if head_epochs else (max_epochs,)
        callbacks.append(("lr_scheduler", LRScheduler(
            phased_scheduler, kind=lr_schedule, peak_lr=lr, phase_epochs=phases,
            batches_per_epoch=batches_per_epoch, step_every="epoch" if lr_schedule == "cosine" else "batch")))
    if early_stopping is not None and has_validation:
        callbacks.append(("early_stopping", PhasedEarlyStopping(
            monitor="valid_loss", patience=early_stopping, load_best=True,
            sink=print if verbose else silent, start_epoch=head_epochs)))
    if verbose:
        callbacks.append(("progress_bar", ProgressBar()))
    return callbacks


def silent(*args, **kwargs):
    """Sink for callbacks' messages when ``verbose=0``."""


def batches_per_epoch(n_samples, batch_size):
    return math.ceil(n_samples / batch_size)


def history_records(history):
    """Per-epoch losses and accuracies of a skorch ``History``.

    Returns
    -------
    records : list of dict
        Keys ``epoch``, ``train_loss``, ``train_acc``, ``dur`` and, when a
        validation set was held out, ``valid_loss`` and ``valid_acc``.
    """
    keys = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "dur")
    return [
        {k: float(row[k]) if not isinstance(row[k], numbers.Integral) else int(row[k])
         for k in keys if k in row}
        for row in history
    ]
