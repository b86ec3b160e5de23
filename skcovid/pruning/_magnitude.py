"""Unstructured magnitude pruning, one-shot or along a polynomial-decay schedule."""

import copy
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback
from torch import nn
from torch.nn.utils import prune

from skcovid._core.compat import Interval, StrOptions, fit_context

_PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)


def _prunable_layers(module):
    """Names of the convolution and linear layers whose weights are pruned."""
    return [name for name, sub in module.named_modules() if isinstance(sub, _PRUNABLE)]


def weight_sparsity(module, layers=None):
    """Fraction of zeros among the weights of the convolution and linear layers.

    Parameters
    ----------
    module : nn.Module
    layers : list of str or None
        Layer names; all convolution and linear layers by default.

    Returns
    -------
    sparsity : float
    """
    layers = _prunable_layers(module) if layers is None else layers
    weights = [module.get_submodule(name).weight for name in layers]
    total = sum(w.numel() for w in weights)
    return 1.0 - sum(int(torch.count_nonzero(w)) for w in weights) / total


def _magnitude_masks(weights, sparsity, scope):
    """Masks keeping the largest-magnitude entries; exactly round(sparsity * n) pruned."""
    if scope == "layer":
        return [_magnitude_masks([w], sparsity, "global")[0] for w in weights]
    scores = torch.cat([w.detach().abs().flatten() for w in weights])
    n_pruned = int(round(sparsity * scores.numel()))
    keep = torch.zeros_like(scores, dtype=torch.bool)
    if n_pruned < scores.numel():
        keep[torch.topk(scores, scores.numel() - n_pruned, sorted=False).indices] = True
    masks, start = [], 0
    for w in weights:
        masks.append(keep[start:start + w.numel()].view_as(w))
        start += w.numel()
    return masks


class MagnitudePruner(BaseEstimator):
    """Unstructured magnitude pruning of convolution and linear weights.

    The weights of smallest absolute value are set to zero, over the whole
    network (``scope="global"``) or in each layer (``scope="layer"``). Zeros
    make nothing faster by themselves; :class:`skcovid.PrunedCNNClassifier`
    stores the pruned tensors sparsely, so the saved model shrinks.

    Parameters
    ----------
    sparsity : float, default=0.5
        Target fraction of zero weights, in ``[0, 1)``.
    scope : {"global", "layer"}, default="global"
    schedule : {"oneshot", "polynomial"}, default="oneshot"
        ``"oneshot"`` prunes to ``sparsity`` before fine-tuning and keeps the
        pruned weights at zero during it. ``"polynomial"`` raises sparsity
        during fine-tuning along TensorFlow Model Optimization's
        PolynomialDecay (see :meth:`schedule_value`), every ``frequency``
        optimizer steps, and reaches ``sparsity`` at the end.
    initial_sparsity : float, default=0.0
        Sparsity at ``begin_step`` of the polynomial schedule.
    power : float, default=3
        Exponent of the polynomial schedule.
    frequency : int, default=10
        Optimizer steps between two sparsity updates of the polynomial schedule.
    begin_step : int, default=0
        Step at which the polynomial schedule starts.
    end_step : int or None, default=None
        Step at which it reaches ``sparsity``; ``None`` is the last step of
        fine-tuning.

    Attributes
    ----------
    layers_ : list of str
        Names of the pruned layers.
    n_weights_ : int
        Number of weights in those layers.

    Examples
    --------
    >>> import torch
    >>> from skcovid.pruning import MagnitudePruner, weight_sparsity
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 2))
    >>> pruned = MagnitudePruner(sparsity=0.5).fit(net).transform(net)
    >>> round(weight_sparsity(pruned), 2)
    0.5
    """

    _parameter_constraints = {
        "sparsity": [Interval(Real, 0, 1, closed="left")],
        "scope": [StrOptions({"global", "layer"})],
        "schedule": [StrOptions({"oneshot", "polynomial"})],
        "initial_sparsity": [Interval(Real, 0, 1, closed="left")],
        "power": [Interval(Real, 0, None, closed="neither")],
        "frequency": [Interval(Integral, 1, None, closed="left")],
        "begin_step": [Interval(Integral, 0, None, closed="left")],
        "end_step": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, sparsity=0.5, scope="global", schedule="oneshot", initial_sparsity=0.0,
                 power=3, frequency=10, begin_step=0, end_step=None):
        self.sparsity = sparsity
        self.scope = scope
        self.schedule = schedule
        self.initial_sparsity = initial_sparsity
        self.power = power
        self.frequency = frequency
        self.begin_step = begin_step
        self.end_step = end_step

    def _check_params(self):
        """The checks that involve several parameters (each alone is in ``_parameter_constraints``)."""
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity={self.initial_sparsity} must not exceed "
                             f"sparsity={self.sparsity}.")
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise ValueError(f"end_step={self.end_step} must be greater than "
                             f"begin_step={self.begin_step}.")

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, module, X=None, y=None):
        """Find the layers to prune; magnitudes are scored in :meth:`transform`.

        Parameters
        ----------
        module : nn.Module
        X, y : ignored
            Present for API consistency with :class:`StructuredPruner`.

        Returns
        -------
        self : MagnitudePruner
        """
        self._check_params()
        self.layers_ = _prunable_layers(module)
        if not self.layers_:
            raise ValueError("The module has no convolution or linear layer to prune.")
        self.n_weights_ = sum(module.get_submodule(n).weight.numel() for n in self.layers_)
        return self

    def transform(self, module):
        """Return a copy of ``module`` with its smallest weights set to zero.

        Parameters
        ----------
        module : nn.Module
            The module given to :meth:`fit` (or one of the same architecture).

        Returns
        -------
        pruned : nn.Module
            Plain module at ``sparsity``: no masks or ``weight_orig`` left.
        """
        check_is_fitted(self)
        pruned = copy.deepcopy(module)
        layers = [pruned.get_submodule(name) for name in self.layers_]
        masks = _magnitude_masks([layer.weight for layer in layers], self.sparsity, self.scope)
        for layer, mask in zip(layers, masks):
            prune.custom_from_mask(layer, "weight", mask)
            prune.remove(layer, "weight")
        return pruned

    def schedule_value(self, step, end_step=None):
        """Sparsity of the polynomial schedule at an optimizer step.

        ``s(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0)) ** power``
        for ``t`` clipped to ``[t_0, t_1]``, with ``s_i = initial_sparsity``,
        ``s_f = sparsity``, ``t_0 = begin_step`` and ``t_1 = end_step``.

        Parameters
        ----------
        step : int
        end_step : int or None
            Overrides ``self.end_step`` (required when that is None).

        Returns
        -------
        sparsity : float
        """
        t1 = self.end_step if end_step is None else end_step
        if t1 is None:
            raise ValueError("end_step is None: pass the number of fine-tuning steps.")
        t0 = self.begin_step
        t = min(max(step, t0), t1)
        return self.sparsity + (self.initial_sparsity - self.sparsity) * (1 - (t - t0) / (t1 - t0)) ** self.power

    def prepare_finetuning(self, module, total_steps):
        """The module to fine-tune and the skorch callbacks that prune it.

        Parameters
        ----------
        module : nn.Module
        total_steps : int
            Optimizer steps of the fine-tuning.

        Returns
        -------
        module : nn.Module
        callbacks : list of (str, skorch.callbacks.Callback)
        """
        check_is_fitted(self)
        if self.schedule == "oneshot":
            return self.transform(module), [("magnitude_masks", _KeepPrunedWeightsAtZero(self.layers_))]
        end = self.end_step if self.end_step is not None else max(total_steps, self.begin_step + 1)
        return copy.deepcopy(module), [("polynomial_decay", PolynomialDecayPruning(self, end))]

    def for_cycle(self, step, n_steps, *, flops_kept=1.0):
        """An unfitted copy of this pruner for one of ``n_steps`` equal steps toward its ``sparsity``.

        Step ``i`` prunes from the sparsity step ``i - 1`` reached to
        ``s_0 + (sparsity - s_0) * i / n_steps``, where ``s_0`` is
        ``initial_sparsity`` with the polynomial schedule and 0 one-shot:
        one-shot at the step's start, or along the polynomial schedule over
        the step's fine-tuning (``begin_step`` and ``end_step`` count the
        optimizer steps of that fine-tuning). Weights pruned by an earlier
        step are zero, the smallest magnitudes, so they stay pruned.

        Parameters
        ----------
        step : int
            The step, from 1 to ``n_steps``.
        n_steps : int
            The number of steps.
        flops_kept : float, default=1.0
            Unused; present for API consistency with
            :meth:`StructuredPruner.for_cycle`.

        Returns
        -------
        pruner : MagnitudePruner
            Unfitted, with the step's ``initial_sparsity`` and ``sparsity``.
        """
        start = self.initial_sparsity if self.schedule == "polynomial" else 0.0

        def reached(i):
            return self.sparsity if i == n_steps else start + (self.sparsity - start) * i / n_steps

        return clone(self).set_params(initial_sparsity=reached(step - 1), sparsity=reached(step))


class _KeepPrunedWeightsAtZero(Callback):
    """Masks the zero weights during fine-tuning, then makes them permanent."""

    def __init__(self, layers):
        self.layers = layers

    def on_train_begin(self, net, **kwargs):
        for name in self.layers:
            layer = net.module_.get_submodule(name)
            prune.custom_from_mask(layer, "weight", layer.weight != 0)

    def on_train_end(self, net, **kwargs):
        for name in self.layers:
            prune.remove(net.module_.get_submodule(name), "weight")


class PolynomialDecayPruning(Callback):
    """A skorch callback raising magnitude sparsity along a polynomial schedule.

    Every ``pruner.frequency`` optimizer steps between ``begin_step`` and
    ``end_step`` it masks the weights of smallest magnitude so that the
    sparsity equals :meth:`MagnitudePruner.schedule_value`; at the end of
    training it applies the final sparsity and removes the masks.

    Parameters
    ----------
    pruner : MagnitudePruner
        Fitted pruner.
    end_step : int
        Step at which the schedule reaches the final sparsity.

    Attributes
    ----------
    updates_ : list of (int, float)
        The step and the sparsity reached at each update, for inspection.
    """

    def __init__(self, pruner, end_step):
        self.pruner = pruner
        self.end_step = end_step

    def _layers(self, net):
        return [net.module_.get_submodule(name) for name in self.pruner.layers_]

    def _update(self, net, step):
        sparsity = self.pruner.schedule_value(step, self.end_step)
        layers = self._layers(net)
        effective = [layer.weight_orig * layer.weight_mask for layer in layers]
        masks = _magnitude_masks(effective, sparsity, self.pruner.scope)
        with torch.no_grad():
            for layer, mask in zip(layers, masks):
                layer.weight_mask.copy_(mask)
                layer.weight = layer.weight_orig * layer.weight_mask
        kept = sum(int(mask.sum()) for mask in masks)
        self.updates_.append((step, 1.0 - kept / sum(mask.numel() for mask in masks)))

    def on_train_begin(self, net, **kwargs):
        """Mask the pruned layers' weights and apply the schedule's first sparsity.

        Parameters
        ----------
        net : skorch.NeuralNet
        **kwargs
            What skorch passes to callbacks (unused).
        """
        self.step_ = 0
        self.updates_ = []
        for layer in self._layers(net):
            prune.identity(layer, "weight")
        if self.pruner.begin_step == 0:
            self._update(net, 0)

    def on_batch_end(self, net, training=False, **kwargs):
        """Count an optimizer step and raise the sparsity when the schedule says so.

        Parameters
        ----------
        net : skorch.NeuralNet
        training : bool, default=False
            Whether the batch was a training batch (validation batches are not steps).
        **kwargs
            What skorch passes to callbacks (unused).
        """
        if not training:
            return
        self.step_ += 1
        begin = self.pruner.begin_step
        if begin <= self.step_ <= self.end_step and (self.step_ - begin) % self.pruner.frequency == 0:
            self._update(net, self.step_)

    def on_train_end(self, net, **kwargs):
        """Apply the final sparsity and make the masked weights permanent.

        Parameters
        ----------
        net : skorch.NeuralNet
        **kwargs
            What skorch passes to callbacks (unused).
        """
        self._update(net, self.end_step)
        for layer in self._layers(net):
            prune.remove(layer, "weight")
