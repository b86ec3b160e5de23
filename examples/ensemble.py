"""An ensemble of transfer-learned backbones with VotingClassifier and StackingClassifier.

Each member is a TransferCNNClassifier; scikit-learn's VotingClassifier averages
their probabilities (soft voting) and StackingClassifier learns a logistic
regression on their out-of-fold probabilities. Members and ensembles are scored
on the same held-out slices.

Usage::

    python examples/ensemble.py [DATA_DIR] [--weights DEFAULT|PATH|none]
        [--backbones efficientnet_lite0,resnet18,densenet121] [--stacking-cv 3]

Stacking fits every member ``--stacking-cv`` + 1 times.
"""

import argparse

from _common import add_data_arguments, load_split, print_report
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression

from skcovid import TransferCNNClassifier
from skcovid.report import EvaluationReport


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, image_size=128, epochs=10, batch_size=16)
    parser.add_argument("--backbones", default="efficientnet_lite0,resnet18,densenet121")
    parser.add_argument("--freeze", default="backbone")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--stacking-cv", type=int, default=3)
    args = parser.parse_args()

    X_train, X_test, y_train, y_test = load_split(args)
    members = [
        (f"{i}_{backbone}", TransferCNNClassifier(
            backbone=backbone, weights=args.weights, freeze=args.freeze,
            image_size=args.image_size, augment="flip", lr=args.lr, lr_schedule="cosine",
            batch_size=args.batch_size, max_epochs=args.epochs, early_stopping=None,
            validation_fraction=None, device=args.device, random_state=args.random_state))
        for i, backbone in enumerate(args.backbones.split(","))
    ]
    voting = VotingClassifier(members, voting="soft").fit(X_train, y_train)
    scores = {}
    for (name, _), member in zip(members, voting.estimators_):
        # Members are fitted on encoded labels: their columns follow voting.classes_.
        report = EvaluationReport.from_predictions(y_test, member.predict_proba(X_test),
                                                   voting.classes_)
        print(f"\n{name}, held-out:\n{report.summary()}")
        scores[name] = report.metrics
    scores["soft voting"] = print_report("soft voting", voting, X_test, y_test).metrics
    stacking = StackingClassifier(members, final_estimator=LogisticRegression(),
                                  cv=args.stacking_cv, stack_method="predict_proba")
    stacking.fit(X_train, y_train)
    scores["stacking"] = print_report("stacking", stacking, X_test, y_test).metrics

    print("\n" + f"{'':>22}  {'accuracy':>9}  {'f1':>9}  {'roc_auc':>9}")
    for name, m in scores.items():
        print(f"{name:>22}  {m['accuracy']['value']:9.4f}  {m['f1']['value']:9.4f}  "
              f"{m['roc_auc']['value']:9.4f}")


if __name__ == "__main__":
    main()
