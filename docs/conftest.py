"""The documentation's doctests: ``load_model``'s ONNX exports go to a folder of the test run, not ~/.cache."""

import pytest


@pytest.fixture(autouse=True)
def _onnx_cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SKCOVID_CACHE", str(tmp_path_factory.getbasetemp() / "skcovid-cache"))
