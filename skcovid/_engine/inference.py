"""Inference: class probabilities of a fitted net, from cached features or the whole network.

Image files are decoded, windowed and resized a few images ahead in threads
(:func:`skcovid._core.parallel.ordered_map`) while the network runs: the same
images in the same batches as decoding one at a time, so the same numbers.
"""

import numpy as np
import torch

from skcovid._core.parallel import ordered_map
from skcovid._engine.data import ImageDataset, PathImages
from skcovid._engine.net import autocast, shallow_copy
from skcovid._nets.network import ViewAverage, eval_mode


class PrefetchedDataset(torch.utils.data.Dataset):
    """The items of ``dataset``, computed ahead in threads when asked for in order.

    For the loader of a forward pass (unshuffled, without worker processes):
    asking for item ``i`` starts or continues an :func:`ordered_map` from
    ``i`` on, so at most ``max_in_flight`` items wait decoded; asking out of
    order starts again from there. :meth:`close` stops the threads.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
    n_threads : int or None, default=None
        See :func:`ordered_map`.
    max_in_flight : int or None, default=None
        Passed to :func:`ordered_map`.
    """

    def __init__(self, dataset, n_threads=None, max_in_flight=None):
        self.dataset = dataset
        self.n_threads = n_threads
        self.max_in_flight = max_in_flight
        self._stream, self._next = None, None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        if self._stream is None or index != self._next:
            self.close()
            self._stream = ordered_map(self.dataset.__getitem__, range(index, len(self.dataset)),
                                       n_threads=self.n_threads, max_in_flight=self.max_in_flight)
        try:
            item = next(self._stream)
        except BaseException:
            self.close()
            raise
        self._next = index + 1
        return item

    def close(self):
        """Stop computing ahead (waits for the items being computed)."""
        if self._stream is not None:
            self._stream.close()
        self._stream, self._next = None, None


def forward_dataset(net, images, image_size):
    """What the net's forward pass iterates: image files prefetched, unless its loader has worker processes."""
    dataset = ImageDataset(images, None, image_size)
    if isinstance(images, PathImages) and not getattr(net, "iterator_valid__num_workers", 0):
        return PrefetchedDataset(dataset)
    return dataset


def _net_proba(net, images, image_size):
    dataset = forward_dataset(net, images, image_size)
    try:
        return np.asarray(net.predict_proba(dataset), dtype=np.float64)
    finally:
        if isinstance(dataset, PrefetchedDataset):
            dataset.close()


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
        proba = _net_proba(views, images, image_size)
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
        proba = _net_proba(net, images, image_size)
    return proba / proba.sum(axis=1, keepdims=True)
