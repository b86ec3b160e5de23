"""Training through an ``accelerate.Accelerator``: the net that does it and the parameters it cannot go with."""

import torch
from skorch.hf import AccelerateMixin

from skcovid._engine.net import SkorchNet


def is_accelerator(accelerator):
    """Whether ``accelerator`` is an ``accelerate.Accelerator``."""
    from accelerate import Accelerator  # optional: only an installed accelerate can have made one

    return isinstance(accelerator, Accelerator)


def check_accelerator(classifier):
    """Refuse the parameters of a :class:`skcovid.TransferCNNClassifier` that an ``accelerator`` cannot go with."""
    if classifier.accelerator.num_processes > 1 and not torch.distributed.is_initialized():
        raise ValueError(
            f"accelerator was made for {classifier.accelerator.num_processes} processes that are not "
            "running here (a saved model keeps the accelerator it was trained with); pass an "
            "Accelerator() made in this process with set_params(accelerator=...), or None."
        )
    if classifier.device != "auto":
        raise ValueError(
            f"device={classifier.device!r} conflicts with accelerator: the accelerator puts each "
            "process on its device. Leave device='auto'."
        )
    if classifier.precision != "fp32":
        raise ValueError(
            f"precision={classifier.precision!r} conflicts with accelerator: ask for mixed precision "
            "with Accelerator(mixed_precision='bf16' or 'fp16') and leave precision='fp32'."
        )
    if classifier.head_epochs:
        raise ValueError(
            "head_epochs is not supported together with accelerator (the accelerator's wrapper "
            "fixes which parameters train); set head_epochs=0 or train without the accelerator."
        )
    if classifier.checkpoint_dir is not None:
        raise ValueError(
            "checkpoint_dir is not supported together with accelerator; set checkpoint_dir=None "
            "or train without the accelerator."
        )


class AcceleratedNet(AccelerateMixin, SkorchNet):
    """:class:`SkorchNet` trained through an ``accelerate.Accelerator``.

    skorch's :class:`~skorch.hf.AccelerateMixin` prepares the network, the
    optimizer and the training DataLoader, so that training batches are
    sharded over the accelerator's processes (data parallel) and mixed
    precision follows the accelerator. Validation batches are not sharded:
    every process scores the whole validation set on its copy of the network,
    so the validation loss, and early stopping on it, are the same in every
    process (with per-process validation losses one process could stop while
    another waits for it; skorch issues #737 and #952).
    """

    def _initialize_accelerator(self):
        # On CPU processes accelerate wraps every module it prepares in
        # DistributedDataParallel, which refuses modules without trainable
        # parameters, such as the loss (on GPUs accelerate only moves those).
        # Such criteria only need to be on the device.
        criteria, prepared = self._criteria, []
        for name in criteria:
            criterion = getattr(self, name + "_")
            if isinstance(criterion, torch.nn.Module) and not any(
                    p.requires_grad for p in criterion.parameters()):
                criterion.to(self.accelerator.device)
            else:
                prepared.append(name)
        self._criteria = prepared
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria

    def get_iterator(self, dataset, training=False):
        if training:
            return super().get_iterator(dataset, training=True)
        return _OnDevice(SkorchNet.get_iterator(self, dataset, training=False),
                         self.accelerator.device)

    def evaluation_step(self, batch, training=False):
        # Batches are not sharded (see get_iterator): nothing to gather.
        return SkorchNet.evaluation_step(self, batch, training=training)


class _OnDevice:
    """A DataLoader's batches, moved to ``device``."""

    def __init__(self, loader, device):
        self.loader = loader
        self.device = device

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        from accelerate.utils import send_to_device  # optional: the accelerate extra

        for batch in self.loader:
            yield send_to_device(batch, self.device, non_blocking=True)
