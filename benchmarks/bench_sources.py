"""Which recipe holds up on a source it never saw: leave-one-source-out over three public sources.

The sources (read each one's README; the COVID-CT dataset's ``test`` list is never read):

- ``sars``: the SARS-CoV-2 CT-scan slices (``--n-sars`` of them, stratified, seed 0, duplicates dropped;
  screenshots in a lung window, no patient ids);
- ``covid-ct``: COVID-CT's ``train`` and ``val`` lists (figures from papers and case reports);
- ``covid-ct-md``: the COVID-CT-MD sample (60 DICOM slices of 6 patients, read in Hounsfield units;
  COVID-19 against CAP and normal).

Labels are COVID against non-COVID in all three. Each candidate (the default recipe with the crop and
intensity settings its name says, ``--candidates``) is trained, seed 0, on every source but one and scores
the one left out (slice ROC-AUC, accuracy, F1 with COVID as the positive class); and within a source, on
COVID-CT's ``train`` list scored on its ``val`` list. Every candidate is paired with the first (``body``, the
default before 2026-12-05) on the same slices: DeLong's test of the ROC-AUCs, McNemar's of the accuracies
(``skcovid.metrics.compare``; slices of one patient are not independent, so the p-values are optimistic).
Predictions run through ONNX Runtime, as ``load_model`` runs a saved model by default; the backbone's features
are cached across a candidate's fits (``memory``). Fit time is the sum of the candidate's four fits.

``--sars-blocked`` runs only the third comparison within a source: the same SARS-CoV-2 slices put back in
their files' order, blocked 5-fold (blocks of 25 consecutive slices per class: ``BlockedStratifiedKFold``),
each candidate's out-of-fold probabilities pooled and paired with the first candidate's.

Usage::

    python benchmarks/bench_sources.py --covid-ct PATH [--n-sars 600] [--candidates body lungs-auto lungs]
    python benchmarks/bench_sources.py --covid-ct PATH --sars-blocked [--candidates body lungs-auto lungs]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _slices import machine, real_slices
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from skcovid import TransferCNNClassifier, load_model, save_model
from skcovid.datasets import load_covid_ct, load_dicom_folder
from skcovid.metrics import compare
from skcovid.model_selection import BlockedStratifiedKFold

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Candidates: the default recipe with these crop and intensity settings. "body" was the default until
#: 2026-12-05, "lungs-auto" is the default since (each names both settings, whatever the default is).
CANDIDATES = {
    "body": {"crop": "body", "intensity": None},
    "lungs": {"crop": "lungs", "intensity": None},
    "lungs-auto": {"crop": "lungs", "intensity": "auto"},
    "auto": {"crop": "body", "intensity": "auto"},
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


def _natural(path):
    """Sort key of a SARS-CoV-2 file: its class folder, then the number in its name ("Covid (12).png")."""
    name = Path(path).name
    digits = "".join(c for c in name if c.isdigit())
    return Path(path).parent.name, int(digits or 0)


def sars_blocked_folds(sources, n_splits=5):
    """(name, X_train, y_train, X_test, y_test) of each fold of the SARS-CoV-2 slices, blocked and stratified.

    The sampled slices are put back in their files' natural order first: consecutive files are neighbouring
    slices of one scan, which blocks of 25 keep on one side.
    """
    X, y = sources["sars"]
    order = sorted(range(len(X)), key=lambda i: _natural(X[i]))
    X, y = X[order], y[order]
    for k, (train, test) in enumerate(BlockedStratifiedKFold(n_splits=n_splits).split(X, y)):
        yield f"sars blocked fold {k}", X[train], y[train], X[test], y[test]


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


def metrics_of(y, proba, classes):
    """Slice ROC-AUC, and accuracy and F1 (COVID positive) at P(COVID) >= 0.5."""
    p_covid = proba[:, list(classes).index("COVID")]
    pred = np.where(p_covid >= 0.5, "COVID", "non-COVID")
    return {"roc_auc": roc_auc_score(y == "COVID", p_covid), "accuracy": float(accuracy_score(y, pred)),
            "f1": float(f1_score(y, pred, pos_label="COVID", zero_division=0))}


def score(model, X, y):
    proba = model.predict_proba(X)
    return proba, metrics_of(y, proba, model.classes_)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--covid-ct", required=True, help="a copy of the COVID-CT repository layout")
    parser.add_argument("--n-sars", type=int, default=600)
    parser.add_argument("--dicom-dir", default=os.environ.get("SKCOVID_COVID_CT_MD_DIR", ROOT / "covid-ct-md-sample"))
    parser.add_argument("--candidates", nargs="+", default=["body", "lungs-auto", "lungs"], choices=CANDIDATES)
    parser.add_argument("--sars-blocked", action="store_true",
                        help="only SARS-CoV-2 blocked 5-fold within the source (out-of-fold probabilities pooled)")
    args = parser.parse_args()
    sources = load_sources(args)
    if args.sars_blocked:
        return blocked_within_sars(args, sources)
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


def blocked_within_sars(args, sources):
    """Each candidate's out-of-fold ROC-AUC and accuracy on the SARS-CoV-2 slices, blocked 5-fold, paired."""
    print(f"machine: {machine()}")
    pooled = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SKCOVID_CACHE", os.path.join(tmp, "cache"))
        for name in args.candidates:
            probas, truths = [], []
            start = time.perf_counter()
            for _, X_train, y_train, X_test, y_test in sars_blocked_folds(sources):
                clf = TransferCNNClassifier(**CANDIDATES[name], memory=os.path.join(tmp, f"features-{name}"),
                                            random_state=0).fit(X_train, y_train)
                model = load_model(save_model(clf, Path(tmp, f"{name}.skcovid")))
                probas.append(score(model, X_test, y_test)[0])
                truths.append(y_test)
            y_all = np.concatenate(truths)
            proba = np.concatenate(probas)
            pooled[name] = proba
            metrics = metrics_of(y_all, proba, model.classes_)
            cell = f"{metrics['roc_auc']:.3f} / {metrics['accuracy']:.3f}"
            if name != args.candidates[0]:
                c = compare(y_all, proba, pooled[args.candidates[0]], classes=model.classes_, pos_label="COVID",
                            n_bootstraps=0)
                cell += f" (p {c['delong']['p_value']:.2g}, {c['mcnemar']['p_value']:.2g})"
            print(f"| {name} | SARS-CoV-2 blocked 5-fold, {len(y_all)} slices | {cell} | "
                  f"{(time.perf_counter() - start) / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
