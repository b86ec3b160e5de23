"""The ``skcovid`` command."""

import ast
import csv
import inspect
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from skcovid import RECIPES, PrunedCNNClassifier, TransferCNNClassifier
from skcovid._cli.main import build_parser, main
from skcovid._cli.options import FROM_RECIPE, MODEL_OPTIONS, docstring_parameters, plain
from skcovid._cli.train import build_estimator
from skcovid._deploy.persistence import load_model
from skcovid._estimators.recipes import DEFAULT_RECIPE

#: Options that train the small CNN in seconds.
FAST_ARGS = ["--recipe", "frozen", "--backbone", "simple_cnn", "--weights", "none", "--freeze", "none",
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


@pytest.mark.parametrize("command", [None, "train", "evaluate", "compare", "predict", "explain", "demo"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(([command] if command else []) + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: skcovid" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "skcovid", "--version"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.startswith("skcovid ")


def test_version_and_help_do_not_import_torch(capsys):
    # Only a command's own model options import PyTorch (for their help and defaults).
    code = ("import sys\nfrom skcovid._cli.main import main\n"
            "for argv in (['--version'], ['--help'], ['evaluate', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--backbone" in capsys.readouterr().out


def test_train_holds_out_and_saves(data_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "m.joblib"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--test-size", "0.25",
                            "--report", tmp_path / "report", *FAST_ARGS)
    assert status == 0
    assert "held-out metrics" in stdout and "6 images (COVID: 3, non-COVID: 3)" in stdout
    assert "Sensitivity (recall of COVID)" in stdout and "95% CI" in stdout
    model = load_model(out, runtime="torch")
    assert isinstance(model, TransferCNNClassifier) and model.max_epochs == 6
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["n_samples"] == 6 and metrics["pruning"] is None  # not a pruned model


def test_train_split_blocked_keeps_consecutive_slices_together(data_dir, tmp_path, capsys):
    args = [a for a in FAST_ARGS if a != "-q"]
    status, stdout, _ = run(capsys, "train", data_dir, "--out", tmp_path / "m.skcovid", "--split", "blocked",
                            "--block-size", "3", "--test-size", "0.25", *args)
    assert status == 0
    assert ("split by block: training on 18 slices of 6 blocks of 3 consecutive slices per class, "
            "holding out 6 slices of 2 blocks") in stdout
    status, stdout, _ = run(capsys, "train", data_dir, "--out", tmp_path / "cv.skcovid", "--split", "blocked",
                            "--block-size", "4", "--cv", "3", *args)
    assert status == 0 and "3-fold stratified cross-validation by block of 4 consecutive slices" in stdout
    assert stdout.count("(folds: ") == 6


def test_train_target_sensitivity_stores_a_threshold_evaluate_predict_and_compare_use(data_dir, image_folder,
                                                                                      model_path, tmp_path, capsys):
    X, _ = image_folder
    args = [*FAST_ARGS[:FAST_ARGS.index("--validation-fraction")], "-q"]
    out = tmp_path / "m.skcovid"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--target-sensitivity", "0.9",
                            "--calibration", "temperature", "--validation-fraction", "0.25", *args)
    assert status == 0 and "Decision: P(COVID) >= " in stdout
    model = load_model(out, runtime="torch")
    assert model.threshold_ is not None and model.temperature_ > 0
    status, stdout, _ = run(capsys, "evaluate", out, data_dir, "--n-bootstraps", "20", "-q")
    assert status == 0 and f"Decision: P(COVID) >= {model.threshold_:.4f}" in stdout
    status, stdout, _ = run(capsys, "predict", out, *X[:4], "-q", "--runtime", "torch")
    labels = [line.split("\t")[0] for line in stdout.strip().splitlines()[1:]]
    assert labels == model.predict(np.asarray(X[:4], dtype=object)).tolist()
    status, stdout, _ = run(capsys, "compare", out, model_path, data_dir, "--n-bootstraps", "0", "-q",
                            "--runtime", "torch")
    assert status == 0 and f"decisions: A P(COVID) >= {model.threshold_:.4f}, B the most probable class" in stdout
    _, y = image_folder
    accuracy = np.mean(model.predict(np.asarray(X, dtype=object)) == y)
    accuracy_line = next(line for line in stdout.splitlines() if line.strip().startswith("accuracy"))
    assert accuracy_line.split()[1] == f"{accuracy:.4f}"


def test_train_cross_validates_and_prunes(data_dir, tmp_path, capsys):
    out = tmp_path / "pruned.joblib"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--cv", "3",
                            "--prune", "structured:0.5", "--finetune-epochs", "1", *FAST_ARGS)
    assert status == 0
    assert stdout.count("(folds: ") == 6 and "roc_auc" in stdout
    assert "pruning: parameters" in stdout
    model = load_model(out, runtime="torch")
    assert isinstance(model, PrunedCNNClassifier) and model.pruner.ratio == 0.5
    assert model.n_params_ < model.n_params_before_


def test_evaluate_writes_report(model_path, data_dir, tmp_path, capsys):
    status, stdout, _ = run(capsys, "evaluate", model_path, data_dir, "--report", tmp_path,
                            "--n-bootstraps", "100", "-q")
    assert status == 0 and "ROC-AUC" in stdout
    for name in ("metrics.json", "index.html", "roc_curve.png", "confusion_matrix.png",
                 "learning_curves.png", "classification_report.txt"):
        assert (tmp_path / name).stat().st_size > 0


def test_evaluate_prints_calibration_and_operating_points(model_path, data_dir, capsys):
    status, stdout, _ = run(capsys, "evaluate", model_path, data_dir, "--n-bootstraps", "20", "-q")
    assert status == 0
    assert "Brier score: " in stdout and "ECE (10 bins): " in stdout
    for rule in ("sensitivity at specificity >= 0.9:", "sensitivity at specificity >= 0.95:",
                 "specificity at sensitivity >= 0.9:", "specificity at sensitivity >= 0.95:"):
        assert rule in stdout and "threshold " in stdout.split(rule)[1].splitlines()[0]


@pytest.fixture(scope="module")
def other_model_path(data_dir, tmp_path_factory):
    """A second model of the same data: another seed, fewer epochs."""
    path = tmp_path_factory.mktemp("other") / "other.skcovid"
    assert main(["train", str(data_dir), "--out", str(path), *FAST_ARGS, "--epochs", "2",
                 "--random-state", "1"]) == 0
    return path


def test_compare_two_models(model_path, other_model_path, data_dir, image_folder, tmp_path, capsys):
    from skcovid.metrics import compare

    status, stdout, _ = run(capsys, "compare", model_path, other_model_path, data_dir,
                            "--n-bootstraps", "50", "-q")
    assert status == 0, stdout
    X, y = image_folder
    a, b = load_model(model_path, runtime="torch"), load_model(other_model_path, runtime="torch")
    expected = compare(y, a.predict_proba(X), b.predict_proba(X), classes=a.classes_, n_bootstraps=50)
    d, m = expected["delong"], expected["mcnemar"]
    assert f"A = {model_path}, B = {other_model_path}" in stdout
    auc_line = next(line for line in stdout.splitlines() if line.strip().startswith("ROC-AUC"))
    assert f"{d['auc_a']:.4f}" in auc_line and f"{d['auc_b']:.4f}" in auc_line and "DeLong" in auc_line
    accuracy_line = next(line for line in stdout.splitlines() if line.strip().startswith("accuracy"))
    assert f"{m['accuracy_a']:.4f}" in accuracy_line and f"McNemar ({m['method']}" in accuracy_line
    assert "paired bootstrap (50 resamples), 95% CI of A - B:" in stdout
    # A model against itself: no difference.
    status, stdout, _ = run(capsys, "compare", model_path, model_path, data_dir, "--n-bootstraps", "20", "-q")
    assert status == 0 and "+0.0000  DeLong: SE 0.0000, z 0.000, p 1.0000" in stdout
    # With patients (CLASS/PATIENT/ folders): slice level with patients resampled, then patient level.
    import shutil

    for i, path in enumerate(X):
        folder = tmp_path / "patients" / y[i] / f"p{i // 3}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder)
    status, stdout, _ = run(capsys, "compare", model_path, other_model_path, tmp_path / "patients",
                            "--n-bootstraps", "20", "-q")
    assert status == 0 and stdout.startswith("slice level: 24 slices") and "patient level: 8 patients" in stdout


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
    model = load_model(model_path, runtime="torch")
    proba = model.predict_proba(np.asarray([r["path"] for r in rows], dtype=object))
    np.testing.assert_allclose([float(r["proba_COVID"]) for r in rows], proba[:, 0], atol=1e-6)


def test_predict_and_evaluate_run_onnx_exports(model_path, data_dir, image_folder, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from skcovid import export

    X, _ = image_folder
    model = load_model(model_path, runtime="torch")
    onnx_path = export(model, tmp_path / "model.onnx")
    status, stdout, _ = run(capsys, "predict", onnx_path, data_dir, "--csv", tmp_path / "p.csv", "-q")
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert status == 0 and len(rows) == len(X)
    proba = model.predict_proba(np.asarray([r["path"] for r in rows], dtype=object))
    np.testing.assert_allclose([float(r["proba_COVID"]) for r in rows], proba[:, 0], atol=1e-4)
    status, stdout, _ = run(capsys, "evaluate", onnx_path, data_dir, "--n-bootstraps", "50", "-q")
    _, reference, _ = run(capsys, "evaluate", model_path, data_dir, "--n-bootstraps", "50", "-q")
    assert status == 0 and stdout.splitlines()[:3] == reference.splitlines()[:3]
    status, _, err = run(capsys, "explain", onnx_path, X[0], "--out", tmp_path)
    assert status == 1 and "is an ONNX export" in err


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
    (["train", "{data}", "--out", "m.joblib", "--cv", "0"], 2, "at least 1"),
    (["train", "{data}", "--out", "m.joblib", "--ensemble"], 2, "--ensemble keeps the fold models of --cv K"),
    (["train", "{data}", "--out", "m.joblib", "--test-size", "1.5"], 2, "test-size"),
    # Text that is not a value of the option's kind: argparse's usage error.
    (["train", "{data}", "--out", "m.joblib", "--freeze", "many"], 2,
     "--freeze: expected one of int, 'backbone', 'none'; got 'many'"),
    (["train", "{data}", "--out", "m.joblib", "--early-stopping", "soon"], 2,
     "--early-stopping: expected one of int, 'none', 'auto'; got 'soon'"),
    (["train", "{data}", "--out", "m.joblib", "--hidden-units", "512x256"], 2, "512,256"),
    # A value of the right kind that the estimator refuses: its error, in one line.
    (["train", "{data}", "--out", "m.joblib", *FAST_ARGS, "--optimizer", "adagrad"], 1,
     "optimizer.*adagrad"),
    (["train", "{data}", "--out", "m.joblib", *FAST_ARGS, "--epochs", "0"], 1, "max_epochs.*0"),
    (["train", "{data}", "--out", "m.joblib", *FAST_ARGS, "--cv", "2", "--pooling", "median"], 1,
     "'pooling' parameter of TransferCNNClassifier .*'median'"),
    (["evaluate", "{missing}", "{data}"], 1, "Model file not found"),
    (["evaluate", "{data}", "{data}"], 1, "got the directory"),
    (["compare", "{model}", "{missing}", "{data}"], 1, "Model file not found"),
    (["predict", "{model}", "{missing}"], 1, "No such file or folder: .*missing"),
    (["predict", "{model}", "{corrupt}"], 1, "corrupt.png"),
    (["explain", "{model}", "{first}", "--out", "o", "--target", "flu"], 1, "--target 'flu'"),
    (["explain", "{model}", "{first}", "--out", "o", "--layer", "layer9"], 1, "Unknown layer"),
])
def test_bad_input_exits_with_a_clear_error(argv, code, message, model_path, data_dir, image_folder,
                                             tmp_path, capsys, monkeypatch):
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
    last = err.strip().splitlines()[-1]  # after a progress bar, if any
    assert re.match(rf"skcovid( {argv[0]})?: error: ", last) and re.search(message, last), err
    assert not (tmp_path / "m.joblib").exists()


def test_train_skips_unreadable_files_on_request(image_folder, tmp_path, capsys):
    import shutil
    from pathlib import Path

    data = tmp_path / "data"
    shutil.copytree(Path(image_folder[0][0]).parents[1], data)
    (data / "COVID" / "broken.png").write_text("not an image")
    status, _, err = run(capsys, "train", data, "--out", tmp_path / "m.joblib", *FAST_ARGS)
    assert status == 1 and "broken.png" in err and "--skip-unreadable" in err
    status, _, err = run(capsys, "train", data, "--out", tmp_path / "m.joblib", "--skip-unreadable", *FAST_ARGS)
    assert status == 0 and (tmp_path / "m.joblib").exists()
    warned = [line for line in err.splitlines() if "broken.png" in line]  # a warning, on one line
    assert len(warned) == 1 and warned[0].startswith("skcovid train: UserWarning: ")


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
    model = load_model(tmp_path / "model.skcovid", runtime="torch")
    assert isinstance(model, PrunedCNNClassifier) and not model.prefit
    assert (tmp_path / "report" / "index.html").exists()
    pruning = json.loads((tmp_path / "report" / "metrics.json").read_text())["pruning"]
    assert pruning["n_params"] == model.n_params_ < pruning["n_params_before"]
    assert 0 < pruning["params_reduction"] < 1 and 0 < pruning["flops_reduction"] < 1
    assert len(list((tmp_path / "explain").glob("*_gradcam.png"))) == 4


# ------------------------------------------------ options generated from the estimators
def _estimator_class(option):
    return {"TransferCNNClassifier": TransferCNNClassifier,
            "PrunedCNNClassifier": PrunedCNNClassifier}[option.estimator]


def _train_args(*options):
    return build_parser().parse_args(["train", "DATA_DIR", "--out", "m.joblib", *options])


def _train_help(capsys, monkeypatch):
    """``train --help``, each option's entry on one line: ``{flag: "--flag METAVAR help"}``."""
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping inside the help texts
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    entries = re.split(r"\n(?=\S|  -)", capsys.readouterr().out)
    return {entry.split()[0]: " ".join(entry.split()) for entry in entries
            if entry.startswith("  -")}


@pytest.mark.parametrize("cls", [TransferCNNClassifier, PrunedCNNClassifier])
def test_docstring_parameters_agree_with_numpydoc(cls):
    docscrape = pytest.importorskip("numpydoc.docscrape")
    expected = {
        param.name: (param.type, " ".join(line.strip() for line in param.desc if line.strip()))
        for param in docscrape.NumpyDocString(inspect.getdoc(cls))["Parameters"]
    }
    assert docstring_parameters(cls) == expected
    assert set(expected) == set(cls().get_params(deep=False))


def test_every_option_sets_a_parameter_with_its_default():
    args = _train_args()
    assert len({option.flag for option in MODEL_OPTIONS}) == len(MODEL_OPTIONS)
    for option in MODEL_OPTIONS:
        cls = _estimator_class(option)
        defaults = cls().get_params(deep=False)
        assert option.param in defaults, option
        spec, _ = docstring_parameters(cls)[option.param]
        documented = ast.literal_eval(spec.rpartition("default=")[2])
        assert documented == defaults[option.param], (option, spec)
        value = getattr(args, option.param)
        if option.param == "random_state":
            assert value == 0  # the command line's documented default
        elif value is FROM_RECIPE:  # --recipe decides
            assert any(option.param in recipe for recipe in RECIPES.values()), option
        else:
            assert value == defaults[option.param], option
    estimator = build_estimator(_train_args("--prune", "structured:0.5"), verbose=0)
    params = estimator.get_params()
    for option in MODEL_OPTIONS:
        prefix = "estimator__" if option.estimator == "TransferCNNClassifier" else ""
        value = getattr(args, option.param)
        if value is FROM_RECIPE:  # the default recipe's
            value = RECIPES[DEFAULT_RECIPE].get(option.param, TransferCNNClassifier().get_params()[option.param])
        assert params[prefix + option.param] == value, option


def test_option_help_is_the_docstring_description(capsys, monkeypatch):
    entries = _train_help(capsys, monkeypatch)
    for option in MODEL_OPTIONS:
        cls = _estimator_class(option)
        _, description = docstring_parameters(cls)[option.param]
        default = 0 if option.param == "random_state" else cls().get_params()[option.param]
        if option.estimator == "TransferCNNClassifier" and any(option.param in r for r in RECIPES.values()):
            default = "from --recipe, " + "; ".join(
                f"{name}: {recipe.get(option.param, default)}" for name, recipe in RECIPES.items())
        note = option.note() if callable(option.note) else option.note
        expected = " ".join(filter(None, [plain(description).replace("%%", "%"), note,
                                          f"(default: {default})"]))
        assert entries[option.flag].endswith(" " + expected), (entries[option.flag], expected)
    assert entries["--freeze"].startswith("--freeze {backbone,none,K} ")
    assert "an int k trains the last k stages" in entries["--freeze"]
    assert "resnet34" in entries["--backbone"]


@pytest.mark.parametrize("options, param, value", [
    (["--freeze", "2"], "freeze", 2),
    (["--freeze", "none"], "freeze", "none"),
    (["--weights", "none"], "weights", None),
    (["--weights", "IMAGENET1K_V1"], "weights", "IMAGENET1K_V1"),
    (["--hidden-units", "512,256"], "hidden_units", (512, 256)),
    (["--hidden-units", "()"], "hidden_units", ()),
    (["--early-stopping", "auto"], "early_stopping", "auto"),
    (["--early-stopping", "None"], "early_stopping", None),
    (["--early-stopping", "3"], "early_stopping", 3),
    (["--validation-fraction", "AUTO"], "validation_fraction", "auto"),
    (["--validation-fraction", "none"], "validation_fraction", None),
    (["--validation-fraction", "0.25"], "validation_fraction", 0.25),
    (["--augment", "none"], "augment", None),
    (["--class-weight", "balanced"], "class_weight", "balanced"),
])
def test_options_convert_text_to_parameter_values(options, param, value):
    estimator = build_estimator(_train_args(*options), verbose=0)
    assert estimator.get_params()[param] == value


def test_train_keeps_the_fold_models_as_an_ensemble(data_dir, tmp_path, capsys):
    out = tmp_path / "ensemble.skcovid"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--cv", "2", "--ensemble",
                            *FAST_ARGS[:-1])
    assert status == 0 and "averages the probabilities of the 2 fold models" in stdout
    model = load_model(out, runtime="torch")
    assert type(model).__name__ == "VotingClassifier" and model.voting == "soft"
    folds = [member.estimator for member in model.estimators_]
    assert len(folds) == 2 and all(isinstance(fold, TransferCNNClassifier) for fold in folds)
    X = sorted(str(p) for p in data_dir.rglob("*.png"))[:6]
    np.testing.assert_allclose(model.predict_proba(X), np.mean([f.predict_proba(X) for f in folds], axis=0))
    status, stdout, _ = run(capsys, "predict", out, *X, "-q")
    assert status == 0 and len(stdout.strip().splitlines()) == 7


def test_train_compares_the_pruned_model_with_the_unpruned_one(data_dir, tmp_path, capsys):
    out = tmp_path / "pruned.skcovid"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--prune", "structured:0.5",
                            "--finetune-epochs", "1", *FAST_ARGS)
    assert status == 0
    comparison = stdout.split("pruned vs unpruned on the held-out split: ")[1]
    assert "A = pruned, B = unpruned" in comparison and "DeLong" in comparison and "McNemar" in comparison
    model = load_model(out, runtime="torch")
    assert model.prefit is False and not hasattr(model.estimator, "net_")  # saved as it was asked


def test_train_cv_fits_the_temperature_on_out_of_fold_probabilities(data_dir, tmp_path, capsys):
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_validate

    from skcovid._decision.fit import fit_temperature, raw_proba
    from skcovid.datasets import load_image_folder

    args = [*FAST_ARGS[:FAST_ARGS.index("--validation-fraction")]]
    out = tmp_path / "m.skcovid"
    status, stdout, _ = run(capsys, "train", data_dir, "--out", out, "--cv", "3", "--calibration", "temperature",
                            "--validation-fraction", "0.25", *args, "--epochs", "2")
    X, y = load_image_folder(data_dir)
    assert status == 0 and f"out-of-fold probabilities of all {len(X)} images" in stdout
    model = load_model(out, runtime="torch")
    # The same folds, trained again: the saved temperature is the one their out-of-fold probabilities give.
    folds = cross_validate(clone(model), X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                           return_estimator=True, return_indices=True)
    proba = np.zeros((len(X), 2))
    for fold, test in zip(folds["estimator"], folds["indices"]["test"]):
        proba[test] = raw_proba(fold, X[test])
    expected = fit_temperature(proba, np.searchsorted(model.classes_, y))
    assert model.temperature_ == pytest.approx(expected, rel=1e-6)
    assert f"-> {model.temperature_:.4f}" in stdout and 0.05 < model.temperature_ < 20
