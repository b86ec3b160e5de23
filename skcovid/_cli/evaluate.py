"""``skcovid evaluate``: score a saved model on a labelled folder and write its report."""

import time
from pathlib import Path

from skcovid._cli.common import labelled_folder, load_model_file, log, predict_in_chunks, print_pruning
from skcovid._deploy.onnx_runtime import OnnxClassifier
from skcovid._evaluation.report import evaluate


def run(args):
    start = time.perf_counter()
    predictor = load_model_file(args.model, args)
    estimator = predictor
    if isinstance(predictor, OnnxClassifier) and not str(args.model).lower().endswith(".onnx"):
        # ONNX Runtime predicts; the report's training history, pruning summary and temperature are the saved
        # estimator's.
        estimator = load_model_file(args.model, args, runtime="torch")
    X, y, groups = labelled_folder(args, estimator.classes_)
    proba = predict_in_chunks(predictor, X, quiet=args.quiet)
    report = evaluate(estimator, X, y, proba=proba, pos_label=args.pos_label,
                      n_bootstraps=args.n_bootstraps, random_state=0, groups=groups)
    print(report.summary())
    print_pruning(estimator)
    if args.report:
        report.save(args.report)
        print(f"report written to {Path(args.report) / 'index.html'}")
    log(args, f"{time.perf_counter() - start:.0f} s")
