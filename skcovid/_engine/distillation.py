"""Knowledge distillation: the unpruned network teaches the pruned one while it fine-tunes."""

from collections.abc import Mapping

import numpy as np
import torch
from torch.nn import functional as F

from skcovid._engine.data import inference_loader
from skcovid._engine.net import autocast
from skcovid._nets.network import eval_mode


def distillation_loss(student, teacher, y, criterion, *, alpha, temperature):
    """Hinton et al.'s loss, ``alpha * T**2 * KL(p_teacher || p_student) + (1 - alpha) * criterion``.

    Parameters
    ----------
    student, teacher : Tensor of shape (n_samples, n_classes)
        Logits of the network that trains and of the one that teaches.
    y : Tensor of shape (n_samples,)
        Class indices.
    criterion : callable
        The loss on the labels, ``criterion(student, y)`` (the net's
        cross-entropy, class weights included).
    alpha : float
        Weight of the distillation term.
    temperature : float
        ``T``: the probabilities are ``softmax(logits / T)``.

    Returns
    -------
    loss : Tensor
        A scalar; the Kullback-Leibler divergence is averaged over the batch.
    """
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                  reduction="batchmean", log_target=True)
    return alpha * temperature**2 * kl + (1 - alpha) * criterion(student, y)


class _WithTeacherLogits(torch.utils.data.Dataset):
    """A training set whose inputs are ``{"x": image, "teacher": the teacher's logits}``."""

    def __init__(self, dataset, logits):
        self.dataset = dataset
        self.logits = logits

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        return {"x": x, "teacher": self.logits[i]}, y


class Distillation:
    """The ``training_loss`` of :func:`skcovid._engine.fit.fit_network` that distils a teacher network.

    The teacher runs in eval mode, without gradients, at the training
    precision. When the training set is not augmented, its logits are
    computed once per image and kept (fine-tuning cycles reuse them) and
    travel with the inputs; when it is, the teacher runs on each batch, on
    the augmented images the student sees.

    Parameters
    ----------
    teacher : nn.Module
        The fitted network that teaches; it is not modified.
    alpha, temperature : float
        See :func:`distillation_loss`.
    images : PathImages or ArrayImages
        The images the training sets index.
    settings : TrainingSettings
        The training settings; reads ``image_size``, ``batch_size``,
        ``num_workers`` and ``precision``.
    """

    def __init__(self, teacher, *, alpha, temperature, images, settings):
        self.teacher = teacher
        self.alpha = alpha
        self.temperature = temperature
        self.images = images
        self.settings = settings
        self._logits = {}  # image index -> the teacher's logits

    def _teach(self, x):
        device = next(self.teacher.parameters()).device
        with eval_mode(self.teacher), torch.no_grad(), autocast(str(device), self.settings.precision):
            return self.teacher(x.to(device)).float()

    def inputs(self, train_set):
        """The training set to train on: with the teacher's logits, unless it is augmented.

        Parameters
        ----------
        train_set : ImageDataset

        Returns
        -------
        dataset : Dataset
        """
        if train_set.transform is not None:
            return train_set
        missing = np.array([i for i in train_set.indices.tolist() if i not in self._logits], dtype=int)
        if len(missing):
            loader = inference_loader(self.images, self.settings.image_size, self.settings.batch_size,
                                      indices=missing, num_workers=self.settings.num_workers)
            logits = torch.cat([self._teach(x).cpu() for x, _ in loader])
            self._logits.update(zip(missing.tolist(), logits))
        return _WithTeacherLogits(train_set, torch.stack([self._logits[i] for i in train_set.indices.tolist()]))

    def __call__(self, net, y_pred, y_true, X):
        """The loss of a training batch.

        Parameters
        ----------
        net : SkorchNet
            The net that trains; its criterion gives the loss on the labels.
        y_pred : Tensor of shape (n_samples, n_classes)
            The student's logits.
        y_true : Tensor of shape (n_samples,)
        X : Tensor or dict
            The batch's inputs, with the teacher's logits when :meth:`inputs` added them.

        Returns
        -------
        loss : Tensor
        """
        teacher = X["teacher"] if isinstance(X, Mapping) else self._teach(X)
        return distillation_loss(y_pred, teacher.to(y_pred.device), y_true, net.criterion_,
                                 alpha=self.alpha, temperature=self.temperature)
