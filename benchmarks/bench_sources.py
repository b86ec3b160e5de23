"""Which recipe holds up on a source it never saw: leave-one-source-out over three public sources.

The sources (read each one's README; the COVID-CT dataset's ``test`` list is never read):

- ``sars``: the SARS-CoV-2 CT-scan slices (``--n-sars`` of them, stratified, seed 0, duplicates dropped;
  screenshots in a lung window, no patient ids);
- ``covid-ct``: COVID-CT's ``train`` and ``val`` lists (figures from papers and case reports);
- ``covid-ct-md``: the COVID-CT-MD sample (60 DICOM slices of 6 patients, read in Hounsfield units;
  COVID-19 against CAP and normal).

Labels are COVID against non-COVID in all three. Each candidate (the default recipe with some parameters
changed, ``--candidates``) is trained, seed 0, on every source but one and scores the one left out (slice
ROC-AUC, accuracy, F1 with COVID as the positive class); and within a source, on COVID-CT's ``train`` list
scored on its ``val`` list. Every candidate is paired with the first (today's default) on the same slices:
DeLong's test of the ROC-AUCs, McNemar's of the accuracies (``skcovid.metrics.compare``; slices of one
patient are not independent, so the p-values are optimistic). Predictions run through ONNX Runtime, as
``load_model`` runs a saved model by default; the backbone's features are cached across a candidate's fits
(``memory``). Fit time is the sum of the candidate's four fits.

Usage::

    python benchmarks/bench_sources.py --covid-ct PATH [--n-sars 600] [--candidates default lungs lungs-auto]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _slices import machine, real_slices
from sklearn.metrics import roc_auc_score

from skcovid import TransferCNNClassifier, load_model, save_model
from skcovid.datasets import load_covid_ct, load_dicom_folder
from skcovid.metrics import compare

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Candidates: parameters changed from the default recipe's.
CANDIDATES = {
    "default": {},
    "lungs": {"crop": "lungs"},
    "lungs-auto": {"crop": "lungs", "intensity": "auto"},
    "auto": {"intensity": "auto"},
}
POSITIVE = {"COVID", "CT_COVID", "COVID-19"}


def binary(y):
    return np.array(["COVID" if label in POSITIVE else "non-COVID" for label in y], dtype=object)


def load_sources(args):
    """{name: (X, y)} of the three sources, labels COVID / non-COVID."""
    sources = {}
    X, y = real_slices(args.n_sars)
    sources["sars"] = (X, binary(y))
    X, y = load_covid_ct(args.covid_ct, "trainval")
    sources["covid-ct"] = (np.asarray(X, dtype=object), binary(y))
    X, y, _ = load_dicom_folder(args.dicom_dir)
    sources["covid-ct-md"] = (np.asarray(X, dtype=object), binary(y))
    return sources


def tasks(args, sources):
    """(name, X_train, y_train, X_test, y_test) of each left-out source, then COVID-CT train -> val."""
    for held in sources:
        rest = [name for name in sources if name != held]
        yield (f"-> {held}", np.concatenate([sources[n][0] for n in rest]),
               np.concatenate([sources[n][1] for n in rest]), *sources[held])
    X_train, y_train = load_covid_ct(args.covid_ct, "train")
    X_val, y_val = load_covid_ct(args.covid_ct, "val")
    yield ("covid-ct train -> val", np.asarray(X_train, dtype=object), binary(y_train),
           np.asarray(X_val, dtype=object), binary(y_val))


def score(model, X, y):
    column = list(model.classes_).index("COVID")
    proba = model.predict_proba(X)
    pred = np.where(proba[:, column] >= 0.5, "COVID", "non-COVID")
    tp = np.sum((pred == "COVID") & (y == "COVID"))
    f1 = 2 * tp / max(1, np.sum(pred == "COVID") + np.sum(y == "COVID"))
    return proba, {"roc_auc": roc_auc_score(y == "COVID", proba[:, column]),
                   "accuracy": float(np.mean(pred == y)), "f1": float(f1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--covid-ct", required=True, help="a copy of the COVID-CT repository layout")
    parser.add_argument("--n-sars", type=int, default=600)
    parser.add_argument("--dicom-dir", default=os.environ.get("SKCOVID_COVID_CT_MD_DIR", ROOT / "covid-ct-md-sample"))
    parser.add_argument("--candidates", nargs="+", default=["default", "lungs", "lungs-auto"], choices=CANDIDATES)
    args = parser.parse_args()
    sources = load_sources(args)
    print(f"machine: {machine()}")
    print("sources: " + "; ".join(f"{name} {len(X)} slices ({int(np.sum(y == 'COVID'))} COVID)"
                                  for name, (X, y) in sources.items()))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SKCOVID_CACHE", os.path.join(tmp, "cache"))
        for name in args.candidates:
            fit_seconds = 0.0
            for task, X_train, y_train, X_test, y_test in tasks(args, sources):
                clf = TransferCNNClassifier(**CANDIDATES[name], memory=os.path.join(tmp, f"features-{name}"),
                                            random_state=0)
                start = time.perf_counter()
                clf.fit(X_train, y_train)
                fit_seconds += time.perf_counter() - start
                model = load_model(save_model(clf, Path(tmp, f"{name}.skcovid")))
                proba, metrics = score(model, X_test, y_test)
                results[name, task] = (proba, y_test, model.classes_, metrics)
                print(f"{name:>12} {task:<24} ROC-AUC {metrics['roc_auc']:.3f}  accuracy {metrics['accuracy']:.3f}  "
                      f"F1 {metrics['f1']:.3f}", flush=True)
            results[name, "fit"] = fit_seconds
    reference = args.candidates[0]
    task_names = [task for task, *_ in tasks(args, sources)]
    print(f"\n| candidate | {' | '.join(task_names)} | worst left-out source | fit (4 fits) |")
    print("|---|" + "---|" * (len(task_names) + 2))
    for name in args.candidates:
        cells = []
        for task in task_names:
            proba, y_test, classes, metrics = results[name, task]
            cell = f"{metrics['roc_auc']:.3f} / {metrics['accuracy']:.3f}"
            if name != reference:
                ref_proba = results[reference, task][0]
                c = compare(y_test, proba, ref_proba, classes=classes, pos_label="COVID", n_bootstraps=0)
                cell += f" (p {c['delong']['p_value']:.2g}, {c['mcnemar']['p_value']:.2g})"
            cells.append(cell)
        worst = min(results[name, task][3]["roc_auc"] for task in task_names if task.startswith("->"))
        print(f"| {name} | {' | '.join(cells)} | {worst:.3f} | {results[name, 'fit'] / 60:.1f} min |")
    print("\ncells: slice ROC-AUC / accuracy (threshold 0.5); p: DeLong (ROC-AUC) and McNemar (accuracy) "
          f"against {reference}")


if __name__ == "__main__":
    main()
