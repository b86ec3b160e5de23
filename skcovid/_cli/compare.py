"""``skcovid compare``: two saved models on one labelled folder, by slice and by patient."""

import time

from skcovid._cli.common import decisions, labelled_folder, load_model_file, log, predict_in_chunks
from skcovid._cli.main import CommandError
from skcovid._decision.patients import aggregate, aggregation_of, patient_labels
from skcovid._evaluation.comparison import compare, format_comparison


def run(args):
    start = time.perf_counter()
    models = [load_model_file(path, args) for path in (args.model_a, args.model_b)]
    classes = list(models[0].classes_)
    if sorted(map(str, models[1].classes_)) != sorted(map(str, classes)):
        raise CommandError(f"The models have different classes: {classes} and {list(models[1].classes_)}.")
    X, y, groups = labelled_folder(args, classes)
    probas = []
    for model in models:  # columns in the order of the first model's classes
        proba = predict_in_chunks(model, X, quiet=args.quiet)
        probas.append(proba[:, [list(map(str, model.classes_)).index(str(c)) for c in classes]])
    names = (args.model_a, args.model_b)
    pos_label, thresholds = decisions(models, args.pos_label)
    options = dict(pos_label=pos_label, classes=classes, n_bootstraps=args.n_bootstraps, random_state=0)
    result = compare(y, *probas, groups=groups, **options, **thresholds)
    print(("" if groups is None else "slice level: ")
          + format_comparison(result, *names, unit="images" if groups is None else "slices"))
    if groups is not None:
        print("(the slice-level bootstrap resamples patients; DeLong's and McNemar's tests take slices as "
              "independent, which they are not: read the patient level"
              + ("" if thresholds == {"threshold_a": None, "threshold_b": None} else
                 ", where, as in skcovid evaluate, each patient is called for the most probable class")
              + ")")
        _, patient_y = patient_labels(y, groups)
        patient_probas = [aggregate(proba, groups, classes, **aggregation_of(model))[1]
                          for model, proba in zip(models, probas)]
        print("patient level: " + format_comparison(compare(patient_y, *patient_probas, **options), *names,
                                                    unit="patients"))
    log(args, f"{time.perf_counter() - start:.0f} s")
