"""Inference: class probabilities of a fitted net, from cached features or the whole network."""

import numpy as np
import torch

from skcovid._engine.data import ImageDataset
from skcovid._engine.net import autocast, shallow_copy
from skcovid._nets.network import ViewAverage, eval_mode


def predict_proba(net, images, *, image_size, batch_size, tta=None):
    """Class probabilities of a fitted net on images, rows summing to 1.

    With a ``feature_cache`` on the net, the frozen backbone's features are
    looked up (a search scores every fold on images seen before) and only
    the head runs: the same numbers as the whole network. With ``tta`` the
    whole network runs on every view (:class:`skcovid._nets.network.ViewAverage`).

    Parameters
    ----------
    net : SkorchNet
    images : PathImages or ArrayImages
    image_size, batch_size : int
    tta : {None, "flip", "flips"}, default=None

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes), float64
    """
    cache = net.feature_cache
    if tta is not None:
        # A copy of the net around the averaging wrapper: the fitted net stays as it is.
        views = shallow_copy(net)
        views.module_ = ViewAverage(net.module_, tta)
        proba = np.asarray(views.predict_proba(ImageDataset(images, None, image_size)), dtype=np.float64)
    elif cache is not None:
        module, device = net.module_, str(net.device)
        features = cache(module, images, image_size, batch_size=batch_size, device=device,
                         precision=net.precision)
        logits = []
        with eval_mode(module), torch.inference_mode(), autocast(device, net.precision):
            for batch in torch.split(features, batch_size):
                logits.append(module.head(batch.to(device)).float())
        proba = torch.softmax(torch.cat(logits), dim=1).cpu().numpy().astype(np.float64)
    else:
        proba = np.asarray(net.predict_proba(ImageDataset(images, None, image_size)),
                           dtype=np.float64)
    return proba / proba.sum(axis=1, keepdims=True)
