"""Candidate recipes for ``skcovid train``'s default, side by side on three kinds of new data.

Each candidate is :func:`skcovid.recipe` with some parameters set (``CANDIDATES``), trained with seed 0
and scored on:

- ``a``: the public COVID-CT dataset's official patient-level split: trained on its ``train`` list,
  scored on its ``val`` list (patients never seen; :func:`skcovid.datasets.load_covid_ct`). Its
  ``test`` list is never read here: it is kept for the check made after the choice.
- ``b``: the SARS-CoV-2 CT-scan slices (``--n-sars`` of them, stratified, seed 0; duplicates dropped),
  blocked 5-fold (``BlockedStratifiedKFold(5, block_size=25)``: 25 consecutive slices of a class stand
  in for a patient), scored on the pooled out-of-fold probabilities.
- ``c``: trained on those SARS-CoV-2 slices, scored on the COVID-CT-MD DICOM sample (another hospital,
  another country; 6 patients, COVID-19 against CAP and normal), by slice and by patient
  (``predict_patients``, the mean of the slices).

Every candidate is compared with ``frozen``, the baseline, on the same slices
(:func:`skcovid.metrics.compare`: DeLong's test of the ROC-AUC difference,
McNemar's of the accuracy difference). Results go into ``--results`` (JSON,
one entry per part and candidate, written atomically after each), so that the
parts can run in separate processes; the table is printed from all of them.

Usage::

    python benchmarks/bench_recipes.py --covid-ct PATH [--parts a b c] [--candidates frozen finetune]
        [--n-sars 500] [--sars-image-size 128] [--results bench_recipes.json]

``PATH`` is a copy of the COVID-CT repository layout (``Images/``, ``Data-split/``; DEVELOPERS.md says
how to bring it here). Parts whose data is absent are skipped with a message.
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _slices import machine, real_slices

from skcovid import recipe
from skcovid._core.files import atomic_write
from skcovid.datasets import load_covid_ct, load_dicom_folder
from skcovid.metrics import compare
from skcovid.model_selection import BlockedStratifiedKFold

#: The candidates: a recipe and the parameters set on it, fixed before any run.
CANDIDATES = {
    "frozen": ("frozen", {}),
    "frozen-lite2": ("frozen", {"backbone": "efficientnet_lite2", "image_size": 260}),
    "frozen-lite2-body": ("frozen", {"backbone": "efficientnet_lite2", "image_size": 260, "crop": "body"}),
    "frozen-lite2-body-flip": ("frozen", {"backbone": "efficientnet_lite2", "image_size": 260, "crop": "body",
                                          "tta": "flip"}),
    "frozen-lite2-body-max": ("frozen", {"backbone": "efficientnet_lite2", "image_size": 260, "crop": "body",
                                         "pooling": "max"}),
    "frozen-lite2-body-mlp": ("frozen", {"backbone": "efficientnet_lite2", "image_size": 260, "crop": "body",
                                         "hidden_units": (256,), "dropout": 0.5}),
    "finetune": ("finetune", {}),
    "finetune-body": ("finetune", {"crop": "body"}),
    "finetune-last2": ("finetune", {"freeze": 2}),
}
BASELINE = "frozen"
CT_MD = Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-ct-md-sample"
POSITIVE = "COVID"


def _binary(y):
    """COVID-19 against everything else, under the labels of the training sets."""
    return np.where(np.isin(y, ["COVID", "COVID-19"]), POSITIVE, "non-COVID").astype(object)


def _model(name, memory, image_size=None):
    recipe_name, params = CANDIDATES[name]
    if image_size is not None and "image_size" not in params:
        params = {**params, "image_size": image_size}
    clf = recipe(recipe_name, **params, random_state=0)
    return clf.set_params(memory=memory) if clf.freeze == "backbone" else clf


def _fit(name, X, y, memory, image_size=None):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small validation splits: what each recipe does, by design
        model = _model(name, memory, image_size).fit(X, y)
    return model, time.perf_counter() - start


def _positive_proba(model, X):
    return model.predict_proba(X)[:, list(model.classes_).index(POSITIVE)]


def part_a(name, args, memory):
    X, y = load_covid_ct(args.covid_ct, "train")
    X_val, y_val = load_covid_ct(args.covid_ct, "val")
    model, seconds = _fit(name, X, y, memory)
    return {"y": y_val.tolist(), "proba": _positive_proba(model, X_val).tolist(), "fit_seconds": [seconds],
            "n_train": len(X)}


def part_b(name, args, memory):
    X, y = real_slices(args.n_sars)
    proba, seconds = np.zeros(len(X)), []
    for train, test in BlockedStratifiedKFold(5, block_size=25).split(X, y):
        model, fit_seconds = _fit(name, X[train], y[train], memory, args.sars_image_size)
        proba[test] = _positive_proba(model, X[test])
        seconds.append(fit_seconds)
    return {"y": y.tolist(), "proba": proba.tolist(), "fit_seconds": seconds, "n_train": int(len(X) * 0.8)}


def part_c(name, args, memory):
    X, y = real_slices(args.n_sars)
    X_md, y_md, patients = load_dicom_folder(args.ct_md)
    model, seconds = _fit(name, X, y, memory, args.sars_image_size)
    y_md = _binary(y_md)
    patient_ids, patient_proba = model.predict_patients(X_md, patients)
    patient_truth = [y_md[patients == p][0] for p in patient_ids]
    column = list(model.classes_).index(POSITIVE)
    return {"y": y_md.tolist(), "proba": _positive_proba(model, X_md).tolist(), "fit_seconds": [seconds],
            "n_train": len(X), "patients_right": int(sum(
                (row[column] >= 0.5) == (truth == POSITIVE) for row, truth in zip(patient_proba, patient_truth))),
            "n_patients": len(patient_ids)}


PARTS = {"a": part_a, "b": part_b, "c": part_c}
WHAT = {"a": "COVID-CT train -> val (by patient)", "b": "SARS-CoV-2 blocked 5-fold",
        "c": "SARS-CoV-2 -> COVID-CT-MD DICOM (another hospital)"}


def _save(results, path):
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


def _row(part, name, result, baseline):
    y, proba = np.asarray(result["y"], dtype=object), np.asarray(result["proba"])
    base = np.asarray(baseline["proba"]) if baseline is not None else proba
    comparison = compare(y, proba, base, pos_label=POSITIVE, classes=None, n_bootstraps=0)
    scores = comparison["differences"]
    delong, mcnemar = comparison["delong"], comparison["mcnemar"]
    vs = ("- | -" if name == BASELINE or baseline is None else
          f"{delong['difference']:+.3f} (p={delong['p_value']:.3f}) | {mcnemar['difference']:+.3f} "
          f"(p={mcnemar['p_value']:.3f})")
    patients = f"{result['patients_right']}/{result['n_patients']}" if "n_patients" in result else ""
    minutes = np.mean(result["fit_seconds"]) / 60
    return (f"| {part} | {name} | {scores['accuracy']['a']:.3f} | {scores['f1']['a']:.3f} | "
            f"{scores['roc_auc']['a']:.3f} | {patients} | {vs} | {minutes:.1f} ({result['n_train']}) |")


def table(results):
    lines = ["| part | candidate | accuracy | F1 | ROC-AUC | patients right | vs frozen: ROC-AUC (DeLong) "
             "| accuracy (McNemar) | fit min (slices) |", "|---|---|---|---|---|---|---|---|---|"]
    for part in PARTS:
        for name in CANDIDATES:
            if name in results.get(part, {}):
                lines.append(_row(part, name, results[part][name], results[part].get(BASELINE)))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--covid-ct", help="a copy of the COVID-CT repository layout (Images/, Data-split/)")
    parser.add_argument("--ct-md", default=str(CT_MD), help="the COVID-CT-MD DICOM sample")
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=sorted(PARTS))
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--n-sars", type=int, default=500, help="SARS-CoV-2 slices for b and c")
    parser.add_argument("--sars-image-size", type=int, default=None,
                        help="for b and c, the image size of the candidates that do not set their own "
                             "(default: the recipe's, 224)")
    parser.add_argument("--results", default="bench_recipes.json")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text()) if Path(args.results).exists() else {}
    print(machine(), flush=True)
    available = {"a": args.covid_ct is not None and Path(args.covid_ct).is_dir(), "b": True,
                 "c": Path(args.ct_md).is_dir()}
    with tempfile.TemporaryDirectory() as memory:
        for part in [] if args.table_only else args.parts:
            if not available[part]:
                print(f"part {part} ({WHAT[part]}) skipped: its data is not there", file=sys.stderr)
                continue
            for name in args.candidates:
                results.setdefault(part, {})[name] = PARTS[part](name, args, memory)
                _save(results, args.results)
                print(f"{part} {name}: done in {sum(results[part][name]['fit_seconds']) / 60:.1f} min of fitting",
                      flush=True)
    for part in PARTS:
        print(f"{part}: {WHAT[part]}")
    print(table(results))


if __name__ == "__main__":
    main()
