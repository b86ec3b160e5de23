"""Training through an accelerate.Accelerator (skorch's AccelerateMixin), on CPU processes."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skcovid import TransferCNNClassifier, load_model, save_model

from conftest import FAST, ConvOutputDtypes, free_port, make_images

# Among the slowest tests: `pytest -m "not slow"` leaves them out of the quick development loop.
pytestmark = pytest.mark.slow

accelerate = pytest.importorskip("accelerate")


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """An accelerator's settings hold for its whole process: forget them after each test."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # as accelerate's AccelerateTestCase


def test_one_process_gives_the_plain_fit(images, tmp_path):
    X, y = images
    plain = TransferCNNClassifier(**FAST).fit(X, y)
    accelerated = TransferCNNClassifier(accelerator=accelerate.Accelerator(cpu=True), **FAST).fit(X, y)
    # The fitted net predicts without the accelerator, like any other.
    assert type(accelerated.net_) is type(plain.net_)
    assert accelerated.net_.device == "cpu"
    np.testing.assert_allclose(accelerated.predict_proba(X), plain.predict_proba(X), atol=1e-6)
    path = tmp_path / "model.joblib"
    save_model(accelerated, path)
    np.testing.assert_array_equal(load_model(path, runtime="torch").predict_proba(X), accelerated.predict_proba(X))


def test_mixed_precision_follows_the_accelerator(images):
    X, y = images
    accelerator = accelerate.Accelerator(cpu=True, mixed_precision="bf16")
    clf = TransferCNNClassifier(accelerator=accelerator, callbacks=[("dtypes", ConvOutputDtypes())],
                                **FAST).fit(X, y)
    assert dict(clf.net_.callbacks_)["dtypes"].dtypes == {torch.bfloat16}
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("params, error, match", [
    ({"accelerator": "yes"}, TypeError,
     "'accelerator' parameter of TransferCNNClassifier must be an accelerate.Accelerator or None. Got 'yes'"),
    ({"device": "cpu"}, ValueError, "device='cpu' conflicts with accelerator"),
    ({"precision": "bf16"}, ValueError, r"Accelerator\(mixed_precision="),
    ({"checkpoint_dir": "ckpt"}, ValueError, "checkpoint_dir is not supported together with accelerator"),
])
def test_settings_the_accelerator_overrides_are_refused(images, params, error, match):
    X, y = images
    params = {"accelerator": accelerate.Accelerator(cpu=True), **params}
    with pytest.raises(error, match=match):
        TransferCNNClassifier(**{**FAST, **params}).fit(X, y)


@pytest.fixture(scope="module")
def two_processes(two_processes_dir):
    """What each of the 2 processes ended with."""
    return [json.loads((two_processes_dir / f"rank{rank}.json").read_text()) for rank in range(2)]


@pytest.fixture(scope="module")
def two_processes_dir(tmp_path_factory):
    """The folder 2 torchrun processes (gloo, on the CPU) wrote their results to."""
    out = tmp_path_factory.mktemp("ddp")
    worker = Path(__file__).with_name("_data_parallel_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(worker), str(out)],
        # About 10 s; processes that disagree wait for each other forever.
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.parametrize("fit", ["finetuned", "frozen", "pruned"])
def test_two_processes_share_the_batches_and_end_with_one_model(two_processes, fit):
    rank0, rank1 = two_processes
    assert rank0["world_size"] == 2
    first, second = rank0[fit], rank1[fit]
    assert first["net"] == "SkorchNet"
    # Each process ran half of every epoch's batches (accelerate pads the last
    # ones so that every process takes the same number of steps) ...
    per_epoch = math.ceil(rank0["n_train"] / (2 * 8))
    for result in (first, second):
        assert len(result["batches"]) == per_epoch * result["epochs"]
    # ... on different images, and gradients were averaged: the weights are the
    # same in both processes, to the bit, and so are the predictions.
    assert first["weights"].keys() == second["weights"].keys()
    for name in first["weights"]:
        np.testing.assert_array_equal(first["weights"][name], second["weights"][name], err_msg=name)
    np.testing.assert_array_equal(first["proba"], second["proba"])
    # Validation runs whole in every process: same losses, same early stopping.
    assert first["valid_loss"] == second["valid_loss"]
    assert first["epochs"] == second["epochs"]


def test_frozen_backbone_still_precomputes_its_features(two_processes):
    assert all(rank["frozen"]["precomputed"] for rank in two_processes)


def test_early_stopping_stops_every_process_at_the_same_epoch(two_processes):
    # early_stopping=1 over max_epochs=30: it stopped before the end, in both.
    assert all(rank["finetuned"]["epochs"] < 30 for rank in two_processes)


def test_a_grid_search_gives_the_same_result_in_every_process(two_processes):
    rank0, rank1 = two_processes
    assert rank0["search"] == rank1["search"]
    assert len(rank0["search"]["scores"]) == 2


def test_a_saved_model_predicts_anywhere_but_refuses_to_train_on_missing_processes(
        two_processes_dir, two_processes):
    clf = load_model(two_processes_dir / "finetuned.joblib", trusted=True, runtime="torch")
    X, y = make_images(n_per_class=20, size=24)
    # (torchrun ran 1 thread per process: float sums may round differently here)
    np.testing.assert_allclose(clf.predict_proba(X), two_processes[0]["finetuned"]["proba"], atol=1e-6)
    with pytest.raises(ValueError, match="made for 2 processes that are not running here"):
        clf.fit(X, y)
    clf.set_params(accelerator=None).fit(X, y)  # the way out the message names
