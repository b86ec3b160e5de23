"""Structured (filter and channel) pruning on Torch-Pruning's dependency graph."""

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skcovid._core.compat import Interval, StrOptions, channel_groups, fit_context
from skcovid._core.estimator import upgraded_state
from skcovid._nets.network import eval_mode
from skcovid.pruning._measure import count_flops

_IMPORTANCES = ("l1", "l2", "taylor", "bn_scale")
#: The channel ratio when neither ``ratio`` nor ``target_flops`` is set.
_DEFAULT_RATIO = 0.5
#: The search for ``target_flops`` stops this close to it (a fraction of the FLOPs) ...
_FLOPS_TOLERANCE = 0.005
#: ... or after this many bisection steps, at the ratio that came closest.
_MAX_SEARCH_STEPS = 12


def _importance(name):
    import torch_pruning as tp  # heavy: only structured pruning needs it

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


def _batches(X, y):
    """``(inputs, labels)`` batches: ``X`` and ``y`` as one batch, or the batches ``X`` yields."""
    if isinstance(X, (torch.Tensor, np.ndarray)):
        yield torch.as_tensor(X), None if y is None else torch.as_tensor(y)
    else:
        yield from X


def _allocate(sizes, order, ratio, cap, global_pruning):
    """How many channels each group loses: ``ratio`` of its own (or of all, ranked globally), at most ``cap``.

    ``order`` lists the group of every channel, from the least important channel to the most.
    """
    # Kept channels round down; the epsilon keeps int() from rounding 20 * 0.75 = 14.999... to 14.
    caps = [min(int(cap * n + 1e-9), n - 1) for n in sizes]  # and a group keeps a channel
    if not global_pruning:
        return [min(n - int(n * (1 - ratio) + 1e-9), c) for n, c in zip(sizes, caps)]
    total = sum(sizes)
    left = total - int(total * (1 - ratio) + 1e-9)
    counts = [0] * len(sizes)
    for group in order:
        if left == 0:
            break
        if counts[group] < caps[group]:
            counts[group] += 1
            left -= 1
    return counts


def _prune_groups(pruner, ratio, cap, global_pruning, round_to):
    """Remove the channels of lowest importance from every group of ``pruner``'s dependency graph."""
    groups, scores = [], []
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types):
        imp = pruner.estimate_importance(group)
        if imp is None:
            continue
        n_groups = channel_groups(pruner, group)  # grouped convolutions lose channels in every group
        imp = imp.view(n_groups, -1).mean(dim=0) if n_groups > 1 else imp
        if len(imp) > 1:
            groups.append((group, n_groups))
            scores.append(imp.float().cpu())
    if not groups:
        return
    sizes = [len(s) for s in scores]
    owners = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    order = owners[torch.argsort(torch.cat(scores), stable=True)].tolist()
    for (group, n_groups), score, n_pruned in zip(groups, scores, _allocate(sizes, order, ratio, cap,
                                                                           global_pruning)):
        if round_to and n_pruned:  # keep a multiple of round_to (of at least round_to) channels
            kept = len(score) - n_pruned
            n_pruned = len(score) - max(kept - kept % round_to, min(round_to, len(score)))
        if n_pruned <= 0:
            continue
        idxs = torch.argsort(score)[:n_pruned]
        idxs = torch.cat([idxs + g * len(score) for g in range(n_groups)])
        dep = group[0].dep
        group = pruner.DG.get_pruning_group(dep.target.module, dep.handler, idxs.tolist())
        if pruner.DG.check_pruning_group(group):
            group.prune()


class StructuredPruner(BaseEstimator):
    """Filter and channel pruning that physically removes channels.

    Built on the Torch-Pruning library: its dependency graph finds every layer
    coupled to a pruned channel (residual additions, concatenations, depthwise
    convolutions, BatchNorm), so the network stays valid and FLOPs, parameters
    and latency drop. The classification output layer keeps its width.

    Parameters
    ----------
    ratio : float or None, default=None
        Fraction of the channels of each prunable layer to remove (with
        ``global_pruning``, of all their channels together), in ``[0, 1)``.
        Parameters and FLOPs of a convolution scale roughly with
        ``(1 - ratio) ** 2``. ``None`` means 0.5, unless ``target_flops`` is
        set; the two are exclusive.
    target_flops : float or None, default=None
        Fraction of the network's FLOPs to keep, in ``(0, 1]``, instead of a
        ``ratio``: :meth:`fit` searches the channel ratio by bisection,
        pruning a copy of the network at each step, until the pruned copy
        keeps this fraction of the FLOPs (counted as
        :func:`~skcovid.pruning.count_flops` counts them, on one input of the
        shape ``fit`` saw) within half a percentage point, or as close as
        the channel counts allow after 12 steps (which narrow the ratio to
        about 0.0002).
    importance : {"l1", "l2", "taylor", "bn_scale"}, default="l1"
        Channel importance: L1 or L2 norm of the weights, first-order Taylor
        expansion of the loss (needs labels in :meth:`fit`), or the
        BatchNorm scale.
    global_pruning : bool, default=False
        Rank channels across layers instead of within each layer.
    max_layer_ratio : float, default=0.9
        The largest fraction of any one layer's channels that pruning
        removes, in ``(0, 1]``; every layer also keeps at least one channel.
        With ``global_pruning``, a layer stops losing channels at this
        fraction and the other layers make up the rest of ``ratio``; without
        it, every layer loses ``min(ratio, max_layer_ratio)``.
    round_to : int or None, default=None
        Keep channel counts multiples of this (hardware-friendly widths),
        rounding the kept channels down, but never below ``round_to``.

    Attributes
    ----------
    example_input_shape_ : tuple of int
        Shape of one input, used to trace the dependency graph and count FLOPs.
    ratio_ : float
        The channel ratio :meth:`transform` prunes: ``ratio`` (0.5 if
        ``None``), or the one found for ``target_flops``.
    gradients_ : dict of str to Tensor
        With ``importance="taylor"``: the mean loss gradients over the
        images given to :meth:`fit`.

    Examples
    --------
    >>> import torch
    >>> from skcovid.pruning import StructuredPruner, count_flops
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3),
    ...                           torch.nn.Flatten(), torch.nn.Linear(16 * 12 * 12, 2))
    >>> x = torch.rand(4, 1, 16, 16)
    >>> pruner = StructuredPruner(target_flops=0.5).fit(net, x)
    >>> kept = count_flops(pruner.transform(net), (1, 1, 16, 16)) / count_flops(net, (1, 1, 16, 16))
    >>> bool(abs(kept - 0.5) <= 0.02)
    True
    """

    _parameter_constraints = {
        "ratio": [Interval(Real, 0, 1, closed="left"), None],
        "target_flops": [Interval(Real, 0, 1, closed="right"), None],
        "importance": [StrOptions(set(_IMPORTANCES))],
        "global_pruning": ["boolean"],
        "max_layer_ratio": [Interval(Real, 0, 1, closed="right")],
        "round_to": [Interval(Integral, 1, None, closed="left"), None],
    }
    #: Parameters of earlier versions that a stored pruner may carry, dropped when it loads.
    #: ``iterative_steps`` ran its steps back to back, with no training between them, which
    #: pruned as one step does; ``PrunedCNNClassifier(cycles=...)`` fine-tunes between steps.
    _retired_params = ("iterative_steps",)

    def __init__(self, ratio=None, target_flops=None, importance="l1", global_pruning=False,
                 max_layer_ratio=0.9, round_to=None):
        self.ratio = ratio
        self.target_flops = target_flops
        self.importance = importance
        self.global_pruning = global_pruning
        self.max_layer_ratio = max_layer_ratio
        self.round_to = round_to

    def __setstate__(self, state):
        # A pruner pickled by an earlier version: new parameters take their defaults, retired ones go.
        super().__setstate__(upgraded_state(type(self), state))

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, module, X, y=None):
        """Record the input shape, the Taylor gradients and the channel ratio.

        With ``importance="taylor"``, the gradients of the cross-entropy are
        summed over every batch and divided by the number of images, with the
        network in eval mode: BatchNorm normalises with its running
        statistics and dropout is off, so the gradients are those of the
        network as it predicts, and they do not depend on how the images are
        batched (in train mode, batch statistics would tie the images of a
        batch together).

        Parameters
        ----------
        module : nn.Module
            A fitted network, e.g. ``TransferCNNClassifier().fit(...).net_.module_``.
        X : Tensor of shape (n, C, H, W) or iterable of (Tensor, Tensor)
            A batch of network inputs, or ``(inputs, labels)`` batches (such
            as a DataLoader's).
        y : Tensor of shape (n,) or None, default=None
            Class indices of a batch ``X``; importance ``"taylor"`` needs
            labels, here or in the batches.

        Returns
        -------
        self : StructuredPruner
            The fitted pruner.
        """
        if self.ratio is not None and self.target_flops is not None:
            raise ValueError(f"ratio={self.ratio} and target_flops={self.target_flops} are exclusive: "
                             "set one of them (neither prunes a ratio of 0.5).")
        if self.importance == "taylor":
            self.gradients_ = self._taylor_gradients(module, X, y)
        else:
            inputs, _ = next(iter(_batches(X, y)))
            self.example_input_shape_ = (1, *inputs.shape[1:])
        if self.target_flops is None:
            self.ratio_ = _DEFAULT_RATIO if self.ratio is None else self.ratio
        else:
            self.ratio_ = self._search_ratio(module)
        return self

    def _taylor_gradients(self, module, X, y):
        scored = copy.deepcopy(module).eval()
        device = next(scored.parameters()).device
        for p in scored.parameters():
            p.requires_grad_(True)
            p.grad = None
        n_images = 0
        for inputs, labels in _batches(X, y):
            if labels is None:
                raise ValueError("importance='taylor' needs y to compute loss gradients.")
            self.example_input_shape_ = (1, *inputs.shape[1:])
            loss = nn.functional.cross_entropy(scored(inputs.to(device)), labels.to(device), reduction="sum")
            loss.backward()
            n_images += len(labels)
        return {n: p.grad.detach() / n_images for n, p in scored.named_parameters() if p.grad is not None}

    def _search_ratio(self, module):
        """The channel ratio whose pruned network keeps ``target_flops`` of ``module``'s FLOPs."""
        flops = count_flops(module, self.example_input_shape_)

        def kept(ratio):
            return count_flops(self._prune(module, ratio), self.example_input_shape_) / flops

        ratio = self.max_layer_ratio
        fewest = kept(ratio)
        if fewest > self.target_flops + _FLOPS_TOLERANCE:
            raise ValueError(f"target_flops={self.target_flops} is out of reach: pruning "
                             f"max_layer_ratio={self.max_layer_ratio} of every layer keeps {fewest:.1%} "
                             "of the FLOPs. Raise max_layer_ratio or target_flops.")
        best = min((abs(fewest - self.target_flops), ratio), (1 - self.target_flops, 0.0))
        low, high = 0.0, ratio
        for _ in range(_MAX_SEARCH_STEPS):
            if best[0] <= _FLOPS_TOLERANCE:
                break
            ratio = (low + high) / 2
            fraction = kept(ratio)
            best = min(best, (abs(fraction - self.target_flops), ratio))
            low, high = (ratio, high) if fraction > self.target_flops else (low, ratio)
        return best[1]

    def transform(self, module):
        """Return a copy of ``module`` with channels removed.

        Parameters
        ----------
        module : nn.Module
            The module given to :meth:`fit`.

        Returns
        -------
        pruned : nn.Module
            The pruned copy, ``ratio_`` of its channels removed.
        """
        check_is_fitted(self, "ratio_")
        return self._prune(module, self.ratio_)

    def _prune(self, module, ratio):
        import torch_pruning as tp  # heavy: only structured pruning needs it

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
            # The pruner gives the dependency graph and the importance; the
            # channels are chosen here, to cap what any one layer loses.
            pruner = tp.pruner.BasePruner(
                pruned, torch.zeros(self.example_input_shape_, device=device),
                importance=_importance(self.importance), ignored_layers=_output_layer(pruned))
            _prune_groups(pruner, ratio, self.max_layer_ratio, self.global_pruning, self.round_to)
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
            The module given to :meth:`fit`.
        total_steps : int
            Unused.

        Returns
        -------
        module : nn.Module
            The pruned copy.
        callbacks : list
            Empty.
        """
        return self.transform(module), []

    def for_cycle(self, step, n_steps, *, flops_kept=1.0):
        """An unfitted copy of this pruner for one of ``n_steps`` equal steps toward its target.

        After step ``i``, the network has lost ``ratio * i / n_steps`` of the
        channels of each layer (of all of them, with ``global_pruning``),
        or keeps ``1 - (1 - target_flops) * i / n_steps`` of its original
        FLOPs. A step prunes a network the earlier steps pruned, so its
        ratio is a fraction of the channels left: ``1 - (1 - ratio * i / n)
        / (1 - ratio * (i - 1) / n)``; as every step rounds the channels a
        layer keeps down, ``n_steps`` steps may remove up to ``n_steps - 1``
        channels more from a layer than one step. ``max_layer_ratio`` takes
        the same steps, so that over all of them no layer loses more than
        ``max_layer_ratio`` of its channels.

        Parameters
        ----------
        step : int
            The step, from 1 to ``n_steps``.
        n_steps : int
            The number of steps.
        flops_kept : float, default=1.0
            The fraction of the original network's FLOPs that the network
            this step prunes keeps (used with ``target_flops``).

        Returns
        -------
        pruner : StructuredPruner
            Unfitted, with the step's ``ratio`` or ``target_flops`` and
            ``max_layer_ratio``.
        """
        def step_ratio(fraction):
            return 1 - (1 - fraction * step / n_steps) / (1 - fraction * (step - 1) / n_steps)

        params = {"max_layer_ratio": step_ratio(self.max_layer_ratio)}
        if self.target_flops is None:
            params["ratio"] = step_ratio(_DEFAULT_RATIO if self.ratio is None else self.ratio)
        else:
            goal = self.target_flops if step == n_steps else 1 - (1 - self.target_flops) * step / n_steps
            params["target_flops"] = min(1.0, goal / flops_kept)
        return clone(self).set_params(**params)
