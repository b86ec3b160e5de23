"""Checkpoints written every epoch, and resuming a fit from one to the same result."""

import json
from pathlib import Path

import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.history import History

from skcovid._core.files import atomic_write, jsonable

FILENAME = "skcovid_checkpoint.pt"


class Checkpointer(Callback):
    """Save everything a resumed fit needs, atomically, at the end of every epoch.

    Holds the module's and the optimizer's state, the history, the LR
    scheduler's and early stopping's state and the torch RNG state, in one
    file loadable with ``torch.load(weights_only=True)``.
    """

    def __init__(self, folder, fingerprint, resume=None):
        self.folder = folder
        self.fingerprint = fingerprint
        self.resume = resume

    def on_train_begin(self, net, **kwargs):
        # Runs after the other callbacks' on_train_begin: restore their state.
        if self.resume is None:
            return
        for _, callback in net.callbacks_:
            if isinstance(callback, LRScheduler) and "lr_scheduler" in self.resume:
                scheduler = callback.lr_scheduler_
                scheduler.load_state_dict(self.resume["lr_scheduler"])
                # Creating the scheduler reset the learning rate; put back where it was.
                for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
                    group["lr"] = lr
            if isinstance(callback, EarlyStopping) and "early_stopping" in self.resume:
                state = json.loads(self.resume["early_stopping"])
                callback.misses_ = state["misses"]
                callback.dynamic_threshold_ = state["dynamic_threshold"]
                callback.best_epoch_ = state["best_epoch"]
                callback.best_model_weights_ = self.resume.get("best_model_weights")
        self.resume = None

    def on_epoch_end(self, net, **kwargs):
        self._save(net, finished=False)

    def on_train_end(self, net, **kwargs):
        # After early stopping restored the best weights: a finished fit resumes to them.
        self._save(net, finished=True)

    def _save(self, net, finished):
        state = {
            "fingerprint": self.fingerprint,
            "finished": finished,
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "history": json.dumps(net.history.to_list(), default=jsonable),
            "rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and str(net.device).startswith("cuda"):
            state["cuda_rng"] = torch.cuda.get_rng_state()
        for _, callback in net.callbacks_:
            if isinstance(callback, LRScheduler) and callback.lr_scheduler_ is not None:
                state["lr_scheduler"] = callback.lr_scheduler_.state_dict()
            if isinstance(callback, EarlyStopping):
                state["early_stopping"] = json.dumps({
                    "misses": callback.misses_, "dynamic_threshold": callback.dynamic_threshold_,
                    "best_epoch": callback.best_epoch_}, default=jsonable)
                if callback.best_model_weights_ is not None:
                    state["best_model_weights"] = callback.best_model_weights_
        with atomic_write(Path(self.folder) / FILENAME, "wb") as f:
            torch.save(state, f)


def load_checkpoint(folder, expected_fingerprint):
    """The checkpoint in ``folder``, or None; refuse one from another fit."""
    path = Path(folder) / FILENAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Could not read the checkpoint {path}: {exc}") from exc
    if state.get("fingerprint") != expected_fingerprint:
        raise ValueError(
            f"The checkpoint {path} comes from a fit with other settings or data; resume with the "
            "same parameters and the same X and y, or use another checkpoint_dir."
        )
    return state


def restore(net, state):
    """Load a checkpoint's module, optimizer, history and RNG state into an initialised net."""
    net.module_.load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
    net.history = History(json.loads(state["history"]))
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and str(net.device).startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda_rng"])
