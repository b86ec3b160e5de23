"""Every example script runs end to end (tiny settings, random init, no model hub).

The scripts run in this process (as ``python examples/NAME.py ...`` would run
them, under ``__main__``): a new interpreter per script would spend most of
its time importing PyTorch again.
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port

# Among the slowest tests: `pytest -m "not slow"` leaves them out of the quick development loop.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Six patients' DICOM slices (COVID-CT-MD), the patients dicom_patients.py diagnoses by default.
COVID_CT_MD = Path(os.environ.get("SKCOVID_COVID_CT_MD_DIR",
                                  Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-ct-md-sample"))
# Small networks at small sizes: these check the scripts' wiring, not accuracy.
CASES = {
    "quickstart.py": ["--image-size", "32", "--epochs", "1"],
    "prune_resnet34.py": ["--weights", "none", "--image-size", "32", "--epochs", "1",
                          "--finetune-epochs", "1"],
    "polynomial_decay_pruning.py": ["--weights", "none", "--image-size", "32", "--epochs", "1",
                                    "--finetune-epochs", "1"],
    "resnet101_maxpool_adamax.py": ["--weights", "none", "--image-size", "32", "--epochs", "2"],
    "vgg_resnet_dropout_head.py": ["--weights", "none", "--image-size", "32", "--epochs", "1",
                                   "--hidden-units", "64,32,16"],
    "grid_search_f1.py": ["--weights", "none", "--image-size", "32", "--epochs", "1",
                          "--backbones", "resnet18,simple_cnn", "--lrs", "1e-3",
                          "--batch-sizes", "8", "--optimizers", "adam,sgd", "--cv", "2",
                          "--validation-fraction", "0.3"],
    "ensemble.py": ["--weights", "none", "--image-size", "32", "--epochs", "1", "--freeze", "none",
                    "--backbones", "simple_cnn,resnet18", "--stacking-cv", "2"],
    # Trained on the synthetic PNG slices, tested on the real DICOM patients (skipped without them).
    "dicom_patients.py": ["--weights", "none", "--backbone", "simple_cnn", "--image-size", "32", "--epochs", "1",
                          "--n-bootstraps", "50", "--dicom-dir", str(COVID_CT_MD)],
}


def _run_example(script, args, tmp_path, monkeypatch, capsys):
    """Run ``examples/script`` with ``args`` as its command line, in ``tmp_path``; return what it printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the scripts import examples/_common.py
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / script), *map(str, args)])
    try:
        runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (None, 0), capsys.readouterr().err[-3000:]
    return capsys.readouterr().out


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script, image_folder, tmp_path, monkeypatch, capsys):
    if "--dicom-dir" in CASES[script] and not COVID_CT_MD.is_dir():
        pytest.skip(f"COVID-CT-MD sample not found at {COVID_CT_MD}")
    data_dir = Path(image_folder[0][0]).parents[1]
    out = _run_example(script, [data_dir, *CASES[script]], tmp_path, monkeypatch, capsys)
    assert "accuracy" in out.lower()


def test_data_parallel_example_on_two_cpu_processes(image_folder, tmp_path):
    pytest.importorskip("accelerate")
    data_dir = Path(image_folder[0][0]).parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         str(EXAMPLES / "data_parallel.py"), str(data_dir), "--cpu", "--weights", "none",
         "--backbone", "simple_cnn", "--image-size", "32", "--epochs", "2", "--batch-size", "8",
         "--save", str(tmp_path / "model.joblib")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es) on cpu" in result.stdout
    assert result.stdout.count("data parallel, held-out") == 1  # one report: the main process
    assert (tmp_path / "model.joblib").is_file()


def test_dicom_patients_example_on_synthetic_patients(image_folder, dicom_patients, tmp_path, monkeypatch, capsys):
    pytest.importorskip("pydicom")
    data_dir = Path(image_folder[0][0]).parents[1]
    out = _run_example("dicom_patients.py", [data_dir, "--dicom-dir", dicom_patients,
                                             *CASES["dicom_patients.py"][:-2]], tmp_path, monkeypatch, capsys)
    assert "training on all 24 slices" in out
    assert "testing on 32 slices of 8 patients" in out and "(COVID -> COVID, normal -> non-COVID)" in out
    assert "slice level: 32 slices" in out and "patient level: 8 patients" in out
    patients = [f"{c}{p:02d}" for c in "Cn" for p in range(4)]  # the folders: C00..C03, n00..n03
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in patients]
    assert [row[0] for row in rows] == patients  # one row per patient
    assert all(row[2] == "4" and row[-1] in ("COVID", "non-COVID") for row in rows)
    for identifying in ("Doe", "Jane", "19700101", "ID-COVID", "ID-normal"):  # DICOM header fields
        assert identifying not in out


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(CASES) | {"data_parallel.py"}
