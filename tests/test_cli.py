"""The ``skcovid`` command."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from skcovid import PrunedCNNClassifier, TransferCNNClassifier
from skcovid._cli import main
from skcovid._persistence import load_model

#: Options that train the small CNN in seconds.
FAST_ARGS = ["--backbone", "simple_cnn", "--weights", "none", "--freeze", "none",
             "--image-size", "16", "--epochs", "6", "--lr", "0.01", "--batch-size", "8",
             "--early-stopping", "none", "--validation-fraction", "none", "-q"]


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def data_dir(image_folder):
    X, _ = image_folder
    from pathlib import Path

    return Path(X[0]).parents[1]


@pytest.fixture(scope="module")
def model_path(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    assert main(["train", str(data_dir), "--out", str(path), *FAST_ARGS]) == 0
    return path


@pytest.mark.parametrize("command", [None, "train", "evaluate", "predict", "explain", "demo"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(([command] if command else []) + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: skcovid" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "skcovid", "--version"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.startswith("skcovid ")


def test_train_holds_out_and_saves(data_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "m.joblib"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--test-size", "0.25",
                            "--report", tmp_path / "report", *FAST_ARGS)
    assert status == 0
    assert "held-out metrics" in stdout and "6 images (COVID: 3, non-COVID: 3)" in stdout
    assert "Sensitivity (recall of COVID)" in stdout and "95% CI" in stdout
    model = load_model(out)
    assert isinstance(model, TransferCNNClassifier) and model.max_epochs == 6
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["n_samples"] == 6


def test_train_cross_validates_and_prunes(data_dir, tmp_path, capsys):
    out = tmp_path / "pruned.joblib"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--cv", "3",
                            "--prune", "structured:0.5", "--finetune-epochs", "1", *FAST_ARGS)
    assert status == 0
    assert stdout.count("(folds: ") == 6 and "roc_auc" in stdout
    assert "pruning: parameters" in stdout
    model = load_model(out)
    assert isinstance(model, PrunedCNNClassifier) and model.pruner.ratio == 0.5
    assert model.n_params_ < model.n_params_before_


def test_evaluate_writes_report(model_path, data_dir, tmp_path, capsys):
    status, stdout, _ = run(capsys, "evaluate", model_path, data_dir, "--report", tmp_path,
                            "--n-bootstraps", "100", "-q")
    assert status == 0 and "ROC-AUC" in stdout
    for name in ("metrics.json", "index.html", "roc_curve.png", "confusion_matrix.png",
                 "learning_curves.png", "classification_report.txt"):
        assert (tmp_path / name).stat().st_size > 0


def test_predict_prints_and_writes_csv(model_path, data_dir, image_folder, tmp_path, capsys):
    X, _ = image_folder
    status, stdout, _ = run(capsys, "predict", model_path, X[0], X[-1], "-q")
    assert status == 0
    lines = stdout.strip().splitlines()
    assert lines[0].split("\t") == ["label", "P(COVID)", "P(non-COVID)", "path"]
    assert len(lines) == 3 and lines[1].endswith(X[0])
    status, stdout, _ = run(capsys, "predict", model_path, data_dir, "--csv", tmp_path / "p.csv", "-q")
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert status == 0 and len(rows) == len(X)
    model = load_model(model_path)
    proba = model.predict_proba(np.asarray([r["path"] for r in rows], dtype=object))
    np.testing.assert_allclose([float(r["proba_COVID"]) for r in rows], proba[:, 0], atol=1e-6)


def test_explain_writes_pngs(model_path, image_folder, tmp_path, capsys):
    X, _ = image_folder
    status, stdout, _ = run(capsys, "explain", model_path, X[0], X[-1], "--out", tmp_path,
                            "--feature-maps", "--layer", "block1", "--target", "COVID", "-q")
    assert status == 0 and "4 images written" in stdout
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == sorted(["slice_000_gradcam.png", "slice_000_feature_maps.png",
                           f"slice_{len(X) - 1:03d}_gradcam.png",
                           f"slice_{len(X) - 1:03d}_feature_maps.png"])


@pytest.mark.parametrize("argv, code, message", [
    (["train", "{missing}", "--out", "m.joblib"], 1, "Image folder not found: '.*missing'"),
    (["train", "{data}", "--out", "m.joblib", "--prune", "heavy:0.5"], 2, "structured:RATIO"),
    (["train", "{data}", "--out", "m.joblib", "--prune", "structured:1.5"], 2, r"\[0, 1\)"),
    (["train", "{data}", "--out", "m.joblib", "--epochs", "0"], 2, "at least 1"),
    (["train", "{data}", "--out", "m.joblib", "--test-size", "1.5"], 2, "test-size"),
    (["train", "{data}", "--out", "m.joblib", "--optimizer", "adagrad", *FAST_ARGS], 1,
     "optimizer='adagrad' is not valid"),
    (["evaluate", "{missing}", "{data}"], 1, "Model file not found"),
    (["evaluate", "{data}", "{data}"], 1, "got the directory"),
    (["predict", "{model}", "{missing}"], 1, "No such file or folder: .*missing"),
    (["predict", "{model}", "{corrupt}"], 1, "corrupt.png"),
    (["explain", "{model}", "{first}", "--out", "o", "--target", "flu"], 1, "--target 'flu'"),
    (["explain", "{model}", "{first}", "--out", "o", "--layer", "layer9"], 1, "Unknown layer"),
])
def test_bad_input_exits_with_a_clear_error(argv, code, message, model_path, data_dir, image_folder,
                                             tmp_path, capsys, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    values = dict(missing=tmp_path / "missing", data=data_dir, model=model_path, corrupt=corrupt,
                  first=image_folder[0][0])
    argv = [a.format(**values) for a in argv]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse usage errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == code
    assert re.search(message, err), err
    assert not (tmp_path / "m.joblib").exists()


def test_train_skips_unreadable_files_on_request(image_folder, tmp_path, capsys):
    import shutil
    from pathlib import Path

    data = tmp_path / "data"
    shutil.copytree(Path(image_folder[0][0]).parents[1], data)
    (data / "COVID" / "broken.png").write_text("not an image")
    status, _, err = run(capsys, "train", data, "--out", tmp_path / "m.joblib", *FAST_ARGS)
    assert status == 1 and "broken.png" in err and "--skip-unreadable" in err
    with pytest.warns(UserWarning, match="broken.png"):
        status, _, _ = run(capsys, "train", data, "--out", tmp_path / "m.joblib",
                           "--skip-unreadable", *FAST_ARGS)
    assert status == 0 and (tmp_path / "m.joblib").exists()


def test_evaluate_rejects_unknown_class_folders(model_path, tmp_path, capsys):
    for label in ("COVID", "pneumonia"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / label / "a.png")
    status, _, err = run(capsys, "evaluate", model_path, tmp_path)
    assert status == 1 and "['pneumonia']" in err


def test_demo_runs_the_whole_flow(tmp_path, capsys):
    status, stdout, _ = run(capsys, "demo", "--out", tmp_path, "--epochs", "2",
                            "--finetune-epochs", "1", "--image-size", "64")
    assert status == 0
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in stdout
    model = load_model(tmp_path / "model.joblib")
    assert isinstance(model, PrunedCNNClassifier) and not model.prefit
    assert (tmp_path / "report" / "index.html").exists()
    assert "pruning" in json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert len(list((tmp_path / "explain").glob("*_gradcam.png"))) == 4
