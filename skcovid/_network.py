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
        self.frozen_stages = list(frozen_stages)
        for name in self.frozen_stages:
            for param in self.features.get_submodule(name).parameters():
                param.requires_grad_(False)

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
