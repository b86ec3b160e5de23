"""``skcovid predict``: label new slices, series and volumes with a saved model, by patient where known."""

import csv
import sys
import time

import numpy as np

from skcovid._cli.common import load_model_file, predict_in_chunks
from skcovid._cli.data import expand_images
from skcovid._core.files import atomic_write
from skcovid._decision.decide import decide
from skcovid._decision.fit import decision_of
from skcovid._decision.patients import aggregate, aggregation_of


def run(args):
    estimator = load_model_file(args.model, args)
    start = time.perf_counter()
    files, patients, medical = expand_images(args.inputs)
    by_patient = (args.group_by or ("patient" if medical else "none")) == "patient"
    proba = predict_in_chunks(estimator, files, quiet=args.quiet)
    seconds = time.perf_counter() - start
    classes = [str(c) for c in estimator.classes_]
    # The model's decision: the most probable class, or its threshold for a target sensitivity.
    labels = decide(proba, np.asarray(estimator.classes_), *decision_of(estimator)).astype(str).astype(object)
    if args.csv:
        with atomic_write(args.csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *(["patient"] if by_patient else []), "label",
                             *(f"proba_{c}" for c in classes)])
            for path, patient, label, p in zip(files, patients, labels, proba):
                writer.writerow([path, *([patient] if by_patient else []), label, *(f"{v:.6f}" for v in p)])
        counts = ", ".join(f"{c}: {int(np.sum(labels == c))}" for c in classes)
        print(f"{len(files)} slices ({counts}); written to {args.csv}")
    if by_patient:
        ids, patient_proba = aggregate(proba, patients, estimator.classes_, **aggregation_of(estimator))
        print("\t".join(["patient", "label", "probability", "slices"]))
        for patient, p in zip(ids, patient_proba):
            best = int(p.argmax())
            print("\t".join([str(patient), classes[best], f"{p[best]:.4f}",
                             str(int(np.sum(patients == patient)))]))
    elif not args.csv:
        print("\t".join(["label", *(f"P({c})" for c in classes), "path"]))
        for path, label, p in zip(files, labels, proba):
            print("\t".join([label, *(f"{v:.4f}" for v in p), path]))
    _print_time(args, seconds, len(files), len(np.unique(patients)) if by_patient else None)


def _print_time(args, seconds, n_slices, n_patients):
    """The time from reading the files to the probabilities: per patient where there are patients."""
    if args.quiet:
        return
    rate = f"{n_slices / seconds:.1f} slices/s" if seconds > 0 else "instant"
    per = f"; {seconds / n_patients:.2f} s per patient ({n_patients} patients)" if n_patients else ""
    print(f"predicted {n_slices} slices in {seconds:.2f} s ({rate}{per})", file=sys.stderr)
