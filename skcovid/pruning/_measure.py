"""What a network costs: parameters, FLOPs, serialized size."""

import io

import torch
from torch.utils.flop_counter import FlopCounterMode

from skcovid._nets.network import eval_mode
from skcovid._nets.sparse import pack_module


def count_params(module):
    """Count the parameter entries of ``module``.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    n_params : int
    """
    return sum(p.numel() for p in module.parameters())


def count_nonzero_params(module):
    """Count the non-zero parameter entries of ``module``.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    n_nonzero : int
    """
    return sum(int(torch.count_nonzero(p)) for p in module.parameters())


def count_flops(module, input_shape):
    """Floating-point operations of one forward pass, counted on every aten op.

    Parameters
    ----------
    module : nn.Module
    input_shape : tuple of int
        Shape of the input batch, e.g. ``(1, 1, 224, 224)``.

    Returns
    -------
    flops : int
        As counted by :class:`torch.utils.flop_counter.FlopCounterMode`
        (a multiply-add counts 2).
    """
    device = next(module.parameters()).device
    with eval_mode(module), FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.zeros(input_shape, device=device))
    return int(counter.get_total_flops())


def serialized_size(module, *, sparse=True):
    """Measure the bytes that ``torch.save`` writes for ``module``.

    Parameters
    ----------
    module : nn.Module
    sparse : bool, default=True
        Store mostly-zero weight tensors as a bit mask plus their non-zero
        values, as a fitted classifier's network is when it is pickled.

    Returns
    -------
    size : int
    """
    buffer = io.BytesIO()
    torch.save(pack_module(module) if sparse else module, buffer)
    return buffer.tell()
