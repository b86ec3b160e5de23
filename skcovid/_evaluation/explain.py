"""Grad-CAM heatmaps and feature maps of a fitted network.

The public face is :mod:`skcovid.explain`, which documents the module.
"""

import numpy as np
import torch
from torch.nn import functional as F

from skcovid._core.estimator import fitted_network
from skcovid._core.plotting import require_matplotlib
from skcovid._engine.data import ImageDataset, check_images, inference_loader
from skcovid._nets.backbones import stage_names
from skcovid._nets.network import eval_mode


def layer_names(estimator):
    """List the backbone stages that ``layer=`` accepts, in forward order.

    Any qualified sub-module name inside them (``"layer4.1.conv2"``) works too.

    Parameters
    ----------
    estimator : fitted skcovid classifier

    Returns
    -------
    names : list of str
    """
    _, net, _ = fitted_network(estimator)
    return stage_names(net.features)


def _layer(net, layer, estimator):
    if layer is None:
        return net.features
    try:
        return net.features.get_submodule(layer)
    except AttributeError:
        raise ValueError(
            f"Unknown layer {layer!r}; the backbone's stages are: "
            f"{', '.join(layer_names(estimator))} (or a qualified name inside one)."
        ) from None


def _batches(estimator, X, batch_size):
    classifier, net, image_size = fitted_network(estimator)
    device = next(net.parameters()).device
    images = check_images(classifier, X, reset=False, window=classifier.window, crop=classifier.crop,
                          intensity=classifier.intensity)
    for x, _ in inference_loader(images, image_size, batch_size):
        yield x.to(device)


def _check_feature_map(output, layer):
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"Layer {layer or 'features'!r} gives output {shape}; a (N, C, H, W) feature map "
            "is needed. Pick a convolutional layer with layer=..."
        )


def grad_cam(estimator, X, *, layer=None, target=None, batch_size=16, return_proba=False):
    """Grad-CAM heatmaps, one per image, at the network's input size.

    Parameters
    ----------
    estimator : fitted TransferCNNClassifier or PrunedCNNClassifier
        Or a Pipeline or fitted search ending in one.
    X : array-like
        Images in any form ``predict_proba`` accepts.
    layer : str or None, default=None
        A layer inside the backbone (see :func:`layer_names`); ``None`` for
        the backbone's output.
    target : label or None, default=None
        The class whose score is explained; ``None`` for each image's
        predicted class.
    batch_size : int, default=16
    return_proba : bool, default=False
        Also return the class probabilities of the same forward pass.

    Returns
    -------
    heatmaps : ndarray of shape (n_samples, image_size, image_size)
        In ``[0, 1]``, each scaled by its own maximum (all zeros when nothing
        raises the class score).
    proba : ndarray of shape (n_samples, n_classes)
        Only when ``return_proba``.
    """
    classifier, net, image_size = fitted_network(estimator)
    classes = list(classifier.classes_)
    if target is not None and target not in classes:
        raise ValueError(f"target {target!r} is not one of the classes {classes}.")
    module = _layer(net, layer, estimator)
    captured = {}

    def hook(_, __, output):
        _check_feature_map(output, layer)
        # A copy, so that in-place operations after the layer leave it intact.
        captured["map"] = output.clone()
        return captured["map"]

    heatmaps, probas = [], []
    handle = module.register_forward_hook(hook)
    try:
        with eval_mode(net):
            for x in _batches(estimator, X, batch_size):
                # Frozen stages have no trainable parameters: asking for the
                # input's gradient makes autograd record them anyway.
                x.requires_grad_(True)
                with torch.enable_grad():
                    logits = net(x)
                    index = (logits.argmax(dim=1) if target is None
                             else torch.full((len(x),), classes.index(target), device=x.device))
                    score = logits.gather(1, index[:, None]).sum()
                    (grad,) = torch.autograd.grad(score, captured["map"])
                feature_map = captured["map"].detach()
                weights = grad.mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * feature_map).sum(dim=1, keepdim=True))
                cam = F.interpolate(cam, size=(image_size, image_size), mode="bilinear",
                                    align_corners=False)[:, 0]
                peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
                heatmaps.append((cam / peak).cpu().numpy())
                probas.append(torch.softmax(logits.detach().double(), dim=1).cpu().numpy())
    finally:
        handle.remove()
    heatmaps = np.concatenate(heatmaps).astype(np.float32)
    return (heatmaps, np.concatenate(probas)) if return_proba else heatmaps


def feature_maps(estimator, X, *, layer=None, batch_size=16):
    """Compute the activations of a layer for each image.

    Parameters
    ----------
    estimator : fitted TransferCNNClassifier or PrunedCNNClassifier
    X : array-like
    layer : str or None, default=None
        See :func:`grad_cam`.
    batch_size : int, default=16

    Returns
    -------
    maps : ndarray of shape (n_samples, n_channels, height, width)
    """
    _, net, _ = fitted_network(estimator)
    module = _layer(net, layer, estimator)
    captured = []

    def hook(_, __, output):
        _check_feature_map(output, layer)
        captured.append(output.detach().float().cpu().clone().numpy())  # later in-place ops must not reach it

    handle = module.register_forward_hook(hook)
    try:
        with eval_mode(net), torch.inference_mode():
            for x in _batches(estimator, X, batch_size):
                net(x)
    finally:
        handle.remove()
    return np.concatenate(captured)


def overlay(image, heatmap, *, alpha=0.45, cmap="jet"):
    """Blend a heatmap, coloured, over a grayscale slice.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Intensities in ``[0, 1]``.
    heatmap : ndarray of shape (H, W)
        Values in ``[0, 1]``.
    alpha : float, default=0.45
        Weight of the heatmap where it is 1; it fades out where it is 0.
    cmap : str, default="jet"
        A matplotlib colormap name.

    Returns
    -------
    rgb : ndarray of shape (H, W, 3), dtype uint8
    """
    matplotlib = require_matplotlib()
    image = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    heatmap = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in shape.")
    colour = matplotlib.colormaps[cmap](heatmap)[..., :3]
    weight = alpha * heatmap[..., None]
    rgb = (1 - weight) * image[..., None] + weight * colour
    return np.round(255 * rgb).astype(np.uint8)


def _input_images(estimator, X):
    """The preprocessed (resized, [0, 1]) grayscale slices the network sees."""
    classifier, _, image_size = fitted_network(estimator)
    images = check_images(classifier, X, reset=False, window=classifier.window, crop=classifier.crop,
                          intensity=classifier.intensity)
    dataset = ImageDataset(images, None, image_size)
    return np.stack([dataset[i][0][0].numpy() for i in range(len(dataset))])


def plot_grad_cam(estimator, X, *, layer=None, target=None, titles=None):
    """Draw each slice beside its Grad-CAM overlay, with the prediction.

    Parameters
    ----------
    estimator : fitted skcovid classifier
    X : array-like
    layer : str or None, default=None
        See :func:`grad_cam`.
    target : label or None, default=None
        See :func:`grad_cam`.
        See :func:`grad_cam`.
    titles : list of str or None, default=None
        One per image (file names, say), shown above the slice.

    Returns
    -------
    figures : list of matplotlib.figure.Figure
    """
    matplotlib = require_matplotlib()
    Figure = matplotlib.figure.Figure
    classifier, _, _ = fitted_network(estimator)
    heatmaps, proba = grad_cam(estimator, X, layer=layer, target=target, return_proba=True)
    slices = _input_images(estimator, X)
    classes = list(classifier.classes_)
    figures = []
    for i, (image, heatmap) in enumerate(zip(slices, heatmaps)):
        fig = Figure(figsize=(9, 4.6), layout="constrained")
        ax_image, ax_cam = fig.subplots(1, 2)
        ax_image.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax_image.set_title(titles[i] if titles else f"image {i}", fontsize=10)
        ax_cam.imshow(overlay(image, heatmap, cmap="jet"))
        scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), cmap="jet")
        fig.colorbar(scale, ax=ax_cam, fraction=0.046, label="Grad-CAM (relative to the maximum)")
        predicted = classes[int(np.argmax(proba[i]))]
        explained = predicted if target is None else target
        ax_cam.set_title(f"explains {explained!s}", fontsize=10)
        for ax in (ax_image, ax_cam):
            ax.set_axis_off()
        scores = ", ".join(f"P({c!s}) = {p:.3f}" for c, p in zip(classes, proba[i]))
        fig.suptitle(f"Predicted {predicted!s}  ({scores})")
        figures.append(fig)
    return figures


def plot_feature_maps(estimator, image, *, layer=None, n_maps=16):
    """A grid of the most active channels of a layer for one image.

    Parameters
    ----------
    estimator : fitted skcovid classifier
    image : str, path-like or ndarray of shape (H, W)
        One image.
    layer : str or None, default=None
    n_maps : int, default=16

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    Figure = require_matplotlib().figure.Figure
    X = [image] if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__") else image[None]
    maps = feature_maps(estimator, X, layer=layer)[0]
    order = np.argsort(maps.mean(axis=(1, 2)))[::-1][:n_maps]
    cols = int(np.ceil(np.sqrt(len(order))))
    rows = int(np.ceil(len(order) / cols))
    fig = Figure(figsize=(2.2 * cols, 2.2 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, channel in zip(axes, order):
        ax.imshow(maps[channel], cmap="viridis")
        ax.set_title(f"channel {channel}", fontsize=8)
    fig.suptitle(f"Feature maps of {layer or 'the backbone output'} "
                 f"({maps.shape[0]} channels, {maps.shape[1]}x{maps.shape[2]}; "
                 f"the {len(order)} most active)")
    return fig
