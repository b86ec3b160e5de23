"""What an estimator hands the engine for one fit: a frozen, typed record of its settled parameters."""

import dataclasses
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping

#: Parameters that do not change what training computes (left out of checkpoint keys).
NOT_IN_CHECKPOINT_KEY = frozenset({
    "warm_start", "checkpoint_dir", "verbose", "callbacks", "num_workers", "memory", "image_cache_mb", "device",
    "accelerator", "patient_aggregation", "patient_top_k", "patient_threshold", "tta"})


@dataclass(frozen=True)
class TrainingSettings:
    """The parameters of a fit, as the engine reads them.

    Built from a :class:`~skcovid.TransferCNNClassifier`'s ``get_params()``
    with what ``fit`` settled (``validation_fraction`` and ``early_stopping``
    after ``"auto"``); a pruned fine-tuning derives its own with
    :meth:`replace`. The fields are what the engine reads; ``model_params``
    holds the rest (the backbone, head and decision parameters), which the
    engine reads only through :meth:`params` for checkpoint and feature keys.

    Attributes
    ----------
    image_size, batch_size, max_epochs, head_epochs : int
    lr, layer_decay, label_smoothing, image_cache_mb : float
    lr_schedule, augment, precision, device : str or None
    optimizer : str or type
    early_stopping : int or None
        Patience, resolved.
    validation_fraction : float or None
        Resolved.
    class_weight : "balanced", dict or None
    num_workers : int
    accelerator, memory, checkpoint_dir : object or None
    warm_start : bool
    random_state : int, RandomState or None
    verbose : int
    callbacks : sequence of skorch callbacks or None
    model_params : mapping
        The estimator's other parameters.
    """

    image_size: int
    batch_size: int
    max_epochs: int
    head_epochs: int
    lr: float
    layer_decay: float
    lr_schedule: Any
    optimizer: Any
    early_stopping: Any
    validation_fraction: Any
    class_weight: Any
    label_smoothing: float
    augment: Any
    device: str
    precision: str
    num_workers: int
    image_cache_mb: float
    accelerator: Any
    memory: Any
    checkpoint_dir: Any
    warm_start: bool
    random_state: Any
    verbose: int
    callbacks: Any
    model_params: Mapping = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_params(cls, params, **settled):
        """Settings from an estimator's ``get_params(deep=False)``, with ``settled`` values replacing some.

        Parameters
        ----------
        params : mapping
        **settled
            Values that replace parameters of the same name.

        Returns
        -------
        settings : TrainingSettings
        """
        params = {**params, **settled}
        names = [f.name for f in fields(cls) if f.name != "model_params"]
        missing = [name for name in names if name not in params]
        if missing:
            raise TypeError(f"TrainingSettings needs the parameters {missing}.")
        others = {key: value for key, value in params.items() if key not in names}
        return cls(**{name: params[name] for name in names}, model_params=MappingProxyType(others))

    def replace(self, **changes):
        """A copy with ``changes``: fields only (the model parameters are the estimator's)."""
        return dataclasses.replace(self, **changes)

    def params(self):
        """Every parameter, fields and model parameters, as one dict (for fingerprints)."""
        return {**self.model_params,
                **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_params"}}

    def checkpoint_params(self):
        """The parameters a checkpoint's key depends on: all but :data:`NOT_IN_CHECKPOINT_KEY`."""
        return {key: value for key, value in self.params().items() if key not in NOT_IN_CHECKPOINT_KEY}
