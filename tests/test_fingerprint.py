"""The one fingerprint of what a fit depends on (a private piece: skcovid._engine.fingerprint).

Checkpoints and the feature cache both key on it, so it must be the same in
every process for the same parameters and data, callables included.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
import torchvision

from skcovid import TransferCNNClassifier
from skcovid._engine.fingerprint import fingerprint

TESTS = Path(__file__).resolve().parent


def tiny_backbone():
    """A backbone factory importable from another process."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())


def _data():
    rng = np.random.RandomState(0)
    return rng.rand(16, 12, 12).astype(np.float32), np.arange(16) % 2


PARAMS = dict(backbone=tiny_backbone, weights=None, freeze="none", image_size=12, max_epochs=2,
              batch_size=8, random_state=0)


def _run(code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, check=True,
                          capture_output=True, text=True, timeout=300).stdout.strip()


def test_same_key_in_another_process_for_callables():
    params = {"backbone": tiny_backbone, "optimizer": torch.optim.SGD,
              "factory": torchvision.models.resnet18, "lr": 0.1}
    other = _run("""
        import torch, torchvision
        from skcovid._engine.fingerprint import fingerprint
        from test_fingerprint import tiny_backbone
        print(fingerprint({"backbone": tiny_backbone, "optimizer": torch.optim.SGD,
                           "factory": torchvision.models.resnet18, "lr": 0.1}))
    """)
    assert other == fingerprint(params)


def test_key_follows_parameters_data_code_and_weight_files(tmp_path):
    assert fingerprint({"a": 1}, [0, 1]) != fingerprint({"a": 2}, [0, 1])
    assert fingerprint({"a": 1}, [0, 1]) != fingerprint({"a": 1}, [1, 0])
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"f": lambda: 1}) == fingerprint({"f": lambda: 1})  # same code
    assert fingerprint({"f": lambda: 1}) != fingerprint({"f": lambda: 2})
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"one")
    before = fingerprint({"weights": str(weights)})
    weights.write_bytes(b"other content")
    assert fingerprint({"weights": str(weights)}) != before


def test_checkpoint_of_a_callable_backbone_resumes_in_a_new_process(tmp_path):
    """Trained to the end in another process, resumed here: no refit, the same model."""
    _run(f"""
        import numpy as np
        from skcovid import TransferCNNClassifier
        from test_fingerprint import PARAMS, _data
        X, y = _data()
        clf = TransferCNNClassifier(**PARAMS, checkpoint_dir={str(tmp_path)!r}).fit(X, y)
        np.save({str(tmp_path / "proba.npy")!r}, clf.predict_proba(X))
    """)
    X, y = _data()
    resumed = TransferCNNClassifier(**PARAMS, checkpoint_dir=tmp_path, warm_start=True).fit(X, y)
    assert len(resumed.history_) == PARAMS["max_epochs"]
    np.testing.assert_allclose(resumed.predict_proba(X), np.load(tmp_path / "proba.npy"), atol=1e-6)
