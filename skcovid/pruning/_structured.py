"""Structured (filter and channel) pruning on Torch-Pruning's dependency graph."""

import copy
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._network import eval_mode

_IMPORTANCES = ("l1", "l2", "taylor", "bn_scale")


def _importance(name):
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.BNScaleImportance()


def _output_layer(module):
    """The last linear layer: the classifier, whose width must not change."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1:] if linears else []


class StructuredPruner(BaseEstimator):
    """Filter and channel pruning that physically removes channels.

    Built on the Torch-Pruning library: its dependency graph finds every layer
    coupled to a pruned channel (residual additions, concatenations, depthwise
    convolutions, BatchNorm), so the network stays valid and FLOPs, parameters
    and latency drop. The classification output layer keeps its width.

    Parameters
    ----------
    ratio : float, default=0.5
        Fraction of the channels of each prunable layer to remove (with
        ``global_pruning``, the overall fraction), in ``[0, 1)``. Parameters
        and FLOPs of a convolution scale roughly with ``(1 - ratio) ** 2``.
    importance : {"l1", "l2", "taylor", "bn_scale"}, default="l1"
        Channel importance: L1 or L2 norm of the weights, first-order Taylor
        expansion of the loss (needs ``X`` and ``y`` in :meth:`fit`), or the
        BatchNorm scale.
    global_pruning : bool, default=False
        Rank channels across layers instead of within each layer.
    round_to : int or None, default=None
        Keep channel counts multiples of this (hardware-friendly widths).
    iterative_steps : int, default=1
        Reach ``ratio`` in this many pruning steps, re-scoring between them.

    Attributes
    ----------
    example_input_shape_ : tuple of int
        Shape of one input, used to trace the dependency graph.
    gradients_ : dict of str to Tensor
        With ``importance="taylor"``: the loss gradients computed in
        :meth:`fit`.
    """

    _parameter_constraints = {
        "ratio": [Interval(Real, 0, 1, closed="left")],
        "importance": [StrOptions(set(_IMPORTANCES))],
        "global_pruning": ["boolean"],
        "round_to": [Interval(Integral, 1, None, closed="left"), None],
        "iterative_steps": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, ratio=0.5, importance="l1", global_pruning=False, round_to=None,
                 iterative_steps=1):
        self.ratio = ratio
        self.importance = importance
        self.global_pruning = global_pruning
        self.round_to = round_to
        self.iterative_steps = iterative_steps

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, module, X, y=None):
        """Record the input shape and, for Taylor importance, the loss gradients.

        Parameters
        ----------
        module : nn.Module
            A fitted network, e.g. ``TransferCNNClassifier().fit(...).net_.module_``.
        X : Tensor of shape (n, C, H, W)
            A batch of network inputs.
        y : Tensor of shape (n,) or None
            Class indices; required with ``importance="taylor"``.

        Returns
        -------
        self : StructuredPruner
        """
        X = torch.as_tensor(X)
        self.example_input_shape_ = (1, *X.shape[1:])
        if self.importance == "taylor":
            if y is None:
                raise ValueError("importance='taylor' needs y to compute loss gradients.")
            scored = copy.deepcopy(module).eval()
            device = next(scored.parameters()).device
            for p in scored.parameters():
                p.requires_grad_(True)
                p.grad = None
            loss = nn.functional.cross_entropy(scored(X.to(device)), torch.as_tensor(y, device=device))
            loss.backward()
            self.gradients_ = {n: p.grad.detach().clone() for n, p in scored.named_parameters()
                               if p.grad is not None}
        return self

    def transform(self, module):
        """Return a copy of ``module`` with channels removed.

        Parameters
        ----------
        module : nn.Module
            The module given to :meth:`fit`.

        Returns
        -------
        pruned : nn.Module
        """
        import torch_pruning as tp

        check_is_fitted(self, "example_input_shape_")
        pruned = copy.deepcopy(module)
        requires_grad = {n: p.requires_grad for n, p in pruned.named_parameters()}
        # Torch-Pruning leaves layers without gradients alone; frozen stages
        # are pruned like the rest (and stay frozen afterwards).
        for p in pruned.parameters():
            p.requires_grad_(True)
        if self.importance == "taylor":
            for name, p in pruned.named_parameters():
                p.grad = self.gradients_.get(name)
        device = next(pruned.parameters()).device
        with eval_mode(pruned):
            pruner = tp.pruner.BasePruner(
                pruned,
                torch.zeros(self.example_input_shape_, device=device),
                importance=_importance(self.importance),
                pruning_ratio=self.ratio,
                global_pruning=self.global_pruning,
                round_to=self.round_to,
                iterative_steps=self.iterative_steps,
                ignored_layers=_output_layer(pruned),
            )
            for _ in range(self.iterative_steps):
                pruner.step()
        # Torch-Pruning makes new Parameters: restore what was frozen.
        for name, p in pruned.named_parameters():
            p.grad = None
            p.requires_grad_(requires_grad.get(name, True))
        return pruned

    def prepare_finetuning(self, module, total_steps):
        """The pruned module to fine-tune; no callback is needed.

        Parameters
        ----------
        module : nn.Module
        total_steps : int
            Unused.

        Returns
        -------
        module : nn.Module
        callbacks : list
        """
        return self.transform(module), []
