"""The network trained by :class:`skcovid.TransferCNNClassifier`."""

import contextlib

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(module):
    """Run the block with ``module`` in eval mode, then restore every submodule's mode.

    Parameters
    ----------
    module : nn.Module

    Yields
    ------
    module : nn.Module
        The same module, in eval mode.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


class InputAdapter(nn.Module):
    """Repeat a grayscale batch over 3 channels and normalise it.

    Keeping this inside the network makes a fitted module self-contained: it
    takes ``(N, 1, H, W)`` intensities in ``[0, 1]``, exactly what skcovid's
    data pipeline produces, so an exported module needs no skcovid code.
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x.expand(-1, self.mean.shape[1], -1, -1) - self.mean) / self.std


class TransferNet(nn.Module):
    """Backbone stages, global pooling and a new classification head.

    Parameters
    ----------
    features : nn.Module
        Backbone mapping ``(N, 3, H, W)`` to a feature map or vectors.
    n_features : int
        Channels of the backbone's output.
    n_classes : int
    mean, std : tuple of float
        Input normalisation of the backbone.
    pooling : {"avg", "max"}
    hidden_units : tuple of int
    dropout : float
    frozen_stages : list of str
        Qualified names, inside ``features``, of the stages that do not train.
        Their parameters get ``requires_grad=False`` and they stay in eval mode
        (BatchNorm statistics frozen) even when the network trains.
    """

    def __init__(self, features, n_features, n_classes, mean, std, pooling="avg",
                 hidden_units=(), dropout=0.0, frozen_stages=()):
        super().__init__()
        self.input = InputAdapter(mean, std)
        self.features = features
        self.pool = nn.AdaptiveMaxPool2d(1) if pooling == "max" else nn.AdaptiveAvgPool2d(1)
        layers, previous = [nn.Flatten()], n_features
        for width in hidden_units:
            layers += [nn.Linear(previous, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            previous = width
        if not hidden_units and dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(previous, n_classes))
        self.head = nn.Sequential(*layers)
        self.frozen_stages = []
        self.set_frozen_stages(frozen_stages)

    def set_frozen_stages(self, names):
        """Freeze exactly the stages ``names``: the stages frozen before and not named train again.

        Parameters
        ----------
        names : list of str
            Qualified names of stages inside ``features``.
        """
        names = list(names)
        for name in self.frozen_stages:
            if name not in names:
                for param in self.features.get_submodule(name).parameters():
                    param.requires_grad_(True)
        for name in names:
            for param in self.features.get_submodule(name).parameters():
                param.requires_grad_(False)
        self.frozen_stages = names
        if self.training:
            self.train()

    def forward(self, x):
        x = self.features(self.input(x))
        if x.ndim == 4:
            x = self.pool(x)
        return self.head(x)

    def train(self, mode=True):
        super().train(mode)
        for name in self.frozen_stages:
            self.features.get_submodule(name).eval()
        return self


#: The flips each test-time augmentation averages over: the dimensions flipped, per view.
TTA_VIEWS = {"flip": ((), (-1,)), "flips": ((), (-1,), (-2,), (-2, -1))}


class ViewAverage(nn.Module):
    """Test-time augmentation: a network's class probabilities averaged over flipped views.

    Returns the logarithm of the mean probabilities, so that a softmax
    (divided by a temperature or not) of its output gives them back: it takes
    a network's place wherever logits are expected.

    Parameters
    ----------
    network : nn.Module
        Maps ``(N, C, H, W)`` images to logits.
    tta : {"flip", "flips"}
        ``"flip"`` averages the image and its left-right mirror; ``"flips"``
        also the up-down mirror and both.
    """

    def __init__(self, network, tta):
        super().__init__()
        self.network = network
        self.views = TTA_VIEWS[tta]

    def forward(self, x):
        # One pass over all views: a batch V times as large.
        views = torch.cat([x.flip(dims) if dims else x for dims in self.views])
        proba = torch.softmax(self.network(views).float(), dim=1)
        proba = proba.unflatten(0, (len(self.views), -1)).mean(dim=0)
        return torch.log(proba.clamp_min(torch.finfo(torch.float32).tiny))
