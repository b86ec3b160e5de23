"""The inference path: decoding prefetched in threads (same numbers, same order, bounded), and the ONNX cache."""

import threading
import time

import numpy as np
import pytest

from skcovid import TransferCNNClassifier, load_model, save_model
from skcovid._cli.main import main
from skcovid._core.parallel import decode_threads, ordered_map
from skcovid._deploy.onnx_cache import cache_path
from skcovid._engine import inference
from skcovid._engine.data import ImageDataset, PathImages

from conftest import FAST


class _Tracker:
    """A function that records how many of its results exist and are not yet taken by the caller."""

    def __init__(self, delay=0.0, fail_at=None):
        self.lock = threading.Lock()
        self.done, self.taken, self.most = 0, 0, 0
        self.delay, self.fail_at = delay, fail_at

    def __call__(self, item):
        time.sleep(self.delay * (item % 3))  # uneven, so that later items can finish first
        if item == self.fail_at:
            raise ValueError(f"item {item} is broken")
        with self.lock:
            self.done += 1
            self.most = max(self.most, self.done - self.taken)
        return item * 10

    def take(self, results):
        for value in results:
            with self.lock:
                self.taken += 1
            yield value


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_ordered_map_keeps_the_order_and_bounds_what_it_holds(n_threads):
    tracker = _Tracker(delay=0.002)
    out = list(tracker.take(ordered_map(tracker, range(100), n_threads=n_threads, max_in_flight=5)))
    assert out == [i * 10 for i in range(100)]
    assert tracker.most <= 5 + 1  # the items in flight, and the one being handed over


def test_decoding_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv("SKCOVID_DECODE_THREADS", "3")
    assert decode_threads() == 3
    monkeypatch.setenv("SKCOVID_DECODE_THREADS", "many")
    with pytest.raises(ValueError, match="SKCOVID_DECODE_THREADS must be a whole number"):
        decode_threads()
    monkeypatch.delenv("SKCOVID_DECODE_THREADS")
    assert 1 <= decode_threads() <= 4


def test_ordered_map_raises_at_the_broken_item():
    tracker = _Tracker(fail_at=7)
    got = []
    with pytest.raises(ValueError, match="item 7 is broken"):
        for value in ordered_map(tracker, range(50), n_threads=2, max_in_flight=4):
            got.append(value)
    assert got == [i * 10 for i in range(7)]
    assert tracker.done <= 7 + 4  # it stopped soon after: no work on the whole rest


def test_prefetched_dataset_gives_the_same_items_in_and_out_of_order(image_folder):
    X, _ = image_folder
    plain = ImageDataset(PathImages(X), None, 16)
    prefetched = inference.PrefetchedDataset(plain, n_threads=2, max_in_flight=3)
    try:
        for index in [*range(len(X)), 5, 6, 2, 3, 4]:  # in order, then a jump back and on again
            np.testing.assert_array_equal(prefetched[index][0].numpy(), plain[index][0].numpy())
    finally:
        prefetched.close()
    np.testing.assert_array_equal(prefetched[0][0].numpy(), plain[0][0].numpy())  # usable after close
    prefetched.close()


@pytest.mark.parametrize("tta", [None, "flip"])
def test_prefetched_predictions_equal_decoding_one_by_one(image_folder, monkeypatch, tta):
    """Bit-identical probabilities, in order, on a folder larger than the pool and than a batch."""
    X, y = image_folder
    monkeypatch.setenv("SKCOVID_DECODE_THREADS", "3")
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "batch_size": 5, "tta": tta}).fit(X, y)
    assert isinstance(inference.forward_dataset(clf.net_, PathImages(X), clf.image_size),
                      inference.PrefetchedDataset)
    prefetched = clf.predict_proba(X)
    monkeypatch.setattr(inference, "forward_dataset", lambda net, images, size: ImageDataset(images, None, size))
    np.testing.assert_array_equal(prefetched, clf.predict_proba(X))
    # Reversed, the images fall into other batches, and float32 convolutions depend on a sample's batch at the
    # 1e-7 level on some CPUs (AVX-512 here): in order, not bit for bit.
    np.testing.assert_allclose(prefetched[::-1], clf.predict_proba(X[::-1]), rtol=0, atol=1e-5)


def test_onnx_runtime_is_exported_once_into_a_cache_keyed_by_the_file(image_folder, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    X, y = image_folder
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2}).fit(X, y)
    model_file = save_model(clf, tmp_path / "model.skcovid")
    cache = tmp_path / "cache"
    onnx_model = load_model(model_file, runtime="onnx", cache_dir=cache)
    np.testing.assert_allclose(onnx_model.predict_proba(X), clf.predict_proba(X), atol=1e-4)
    assert onnx_model.predict(X).tolist() == clf.predict(X).tolist()
    cached = cache_path(model_file, cache)
    assert cached.is_file() and list((cache / "onnx").iterdir()) == [cached]
    # The second load reads the cache: no export.
    from skcovid._deploy import onnx_cache

    monkeypatch.setattr(onnx_cache, "export", lambda *a, **k: pytest.fail("exported again"))
    load_model(model_file, runtime="onnx", cache_dir=cache)
    # Another model file, another key.
    other = save_model(TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y), tmp_path / "other.skcovid")
    assert cache_path(other, cache) != cached
    with pytest.raises(ValueError, match="runtime must be 'auto', 'torch' or 'onnx'"):
        load_model(model_file, runtime="tensorflow")


def test_the_default_recipe_loads_into_onnx_runtime_by_default_and_predicts_as_pytorch(tmp_path):
    """runtime="auto": the default recipe's model (Lite2, lung crop, harmonised greys, flip TTA) runs in ONNX."""
    from skcovid import OnnxClassifier
    from skcovid.datasets import load_sample_ct

    X, y = load_sample_ct()
    clf = TransferCNNClassifier(image_size=64, max_epochs=2, random_state=0).fit(X[::5], y[::5])
    assert (clf.backbone, clf.crop, clf.intensity, clf.tta) == ("efficientnet_lite2", "lungs", "auto", "flip")
    model = load_model(save_model(clf, tmp_path / "default.skcovid"), cache_dir=tmp_path / "cache")
    assert isinstance(model, OnnxClassifier)
    np.testing.assert_allclose(model.predict_proba(X[1::10]), clf.predict_proba(X[1::10]), rtol=0, atol=1e-4)
    assert model.predict(X[1::10]).tolist() == clf.predict(X[1::10]).tolist()


def test_auto_runtime_falls_back_to_pytorch_where_onnx_cannot_run_the_model(image_folder, tmp_path, monkeypatch):
    import torch
    from sklearn.ensemble import VotingClassifier
    from sklearn.frozen import FrozenEstimator

    from skcovid import OnnxClassifier
    from skcovid._deploy import onnx_cache

    X, y = image_folder
    members = [TransferCNNClassifier(**{**FAST, "max_epochs": 1, "random_state": seed}).fit(X, y) for seed in (0, 1)]
    ensemble = VotingClassifier([(f"fold_{i}", FrozenEstimator(m)) for i, m in enumerate(members)],
                                voting="soft").fit(X, y)
    ensemble_file = save_model(ensemble, tmp_path / "ensemble.skcovid")
    cache = tmp_path / "cache"
    assert isinstance(load_model(ensemble_file, cache_dir=cache), VotingClassifier)  # an ensemble: PyTorch
    with pytest.raises(TypeError, match="not a skcovid classifier"):
        load_model(ensemble_file, runtime="onnx", cache_dir=cache)
    # A network the exporter refuses: PyTorch, and the refusal is remembered, not tried at every load.
    single = save_model(members[0], tmp_path / "single.skcovid")
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise torch.onnx.OnnxExporterError("an operator ONNX lacks")

    monkeypatch.setattr(onnx_cache, "export", refuse)
    for _ in range(2):
        assert isinstance(load_model(single, cache_dir=cache), TransferCNNClassifier)
    assert len(calls) == 1 and "an operator ONNX lacks" in cache_path(single, cache).with_suffix(".refused").read_text()
    with pytest.raises(torch.onnx.OnnxExporterError):
        load_model(single, runtime="onnx", cache_dir=cache)
    monkeypatch.undo()
    other = save_model(members[1], tmp_path / "other.skcovid")
    assert isinstance(load_model(other, cache_dir=cache), OnnxClassifier)


def test_an_untrusted_pickle_is_refused_whatever_the_cache_holds(image_folder, tmp_path):
    from skcovid import UntrustedModelError

    X, y = image_folder
    path = save_model(TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y), tmp_path / "m.joblib",
                      format="pickle")
    load_model(path, trusted=True, cache_dir=tmp_path / "cache")  # exported into the cache
    assert cache_path(path, tmp_path / "cache").is_file()
    for runtime in ("auto", "onnx"):
        with pytest.raises(UntrustedModelError):
            load_model(path, runtime=runtime, cache_dir=tmp_path / "cache")


def test_predict_command_runs_onnx_and_prints_the_time_per_patient(dicom_patients, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from skcovid.datasets import load_dicom_folder

    X, y, _ = load_dicom_folder(dicom_patients)
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    model_file = save_model(clf, tmp_path / "model.skcovid")
    monkeypatch.setenv("SKCOVID_CACHE", str(tmp_path / "cache"))
    tables = []
    for runtime in ("torch", "onnx", "onnx"):  # the second ONNX run reads the cache
        assert main(["predict", str(model_file), str(dicom_patients), "--runtime", runtime]) == 0
        captured = capsys.readouterr()
        assert "s per patient (8 patients)" in captured.err and "slices/s" in captured.err
        assert ("exporting" in captured.err) == (runtime == "onnx" and len(tables) == 1)
        tables.append([line.split("\t") for line in captured.out.splitlines()
                       if line.count("\t") == 3 and not line.startswith("patient\t")])
    assert len(tables[0]) == 8 and tables[1] == tables[2]
    assert [r[:2] for r in tables[1]] == [r[:2] for r in tables[0]]  # same patients, same labels
    assert np.allclose([float(r[2]) for r in tables[1]], [float(r[2]) for r in tables[0]], atol=1e-3)
