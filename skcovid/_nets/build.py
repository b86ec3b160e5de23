"""The transfer network a classifier's parameters describe: backbone, frozen stages and a new head."""

import warnings

import torch

from skcovid._nets.backbones import build_backbone, stage_names
from skcovid._nets.network import TransferNet, eval_mode


def build_transfer_net(backbone, weights, image_size, n_classes, *, freeze, pooling, hidden_units, dropout):
    """A :class:`~skcovid._nets.network.TransferNet` for ``n_classes``, before training.

    Parameters
    ----------
    backbone, weights, image_size, freeze, pooling, hidden_units, dropout
        As the parameters of :class:`~skcovid.TransferCNNClassifier`.
    n_classes : int

    Returns
    -------
    module : TransferNet
    """
    built = build_backbone(backbone, weights, image_size)
    stages = stage_names(built.features)
    if freeze == "backbone":
        frozen = stages
    elif freeze == "none":
        frozen = []
    else:
        if freeze > len(stages):
            raise ValueError(
                f"freeze={freeze} asks to train the last {freeze} stages, but "
                f"backbone {backbone!r} has {len(stages)} stages: {stages}."
            )
        frozen = stages[: len(stages) - freeze]
    if frozen and not built.pretrained:
        warnings.warn(
            f"freeze={freeze!r} keeps randomly initialised backbone stages fixed; "
            "use pretrained weights or freeze='none'.",
            UserWarning,
            stacklevel=4,
        )
    n_features = _probe_features(built, backbone, image_size)
    return TransferNet(
        built.features, n_features, n_classes, built.mean, built.std,
        pooling=pooling, hidden_units=tuple(hidden_units), dropout=dropout, frozen_stages=frozen,
    )


def _probe_features(built, backbone, image_size):
    """Channels of the backbone's output at ``image_size`` (one dry forward pass)."""
    try:
        with eval_mode(built.features), torch.no_grad():
            out = built.features(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as exc:
        raise ValueError(
            f"image_size={image_size} is too small for backbone {backbone!r}: {exc}"
        ) from exc
    if out.ndim not in (2, 4) or (out.ndim == 4 and min(out.shape[2:]) < 1):
        raise ValueError(
            f"Backbone {backbone!r} gives output of shape {tuple(out.shape)} at "
            f"image_size={image_size}; expected (N, C, H, W) or (N, C)."
        )
    return out.shape[1]
