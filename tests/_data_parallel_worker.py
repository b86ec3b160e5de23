"""One process of a data-parallel fit; tests/test_accelerate.py starts two with torchrun.

Every process fits the same estimators on the same data (fine-tuned, frozen
with precomputed features, pruned then fine-tuned, and a small grid search)
and writes what it ended with to ``OUT_DIR/rank<N>.json``; the main process
saves the fine-tuned model to ``OUT_DIR/finetuned.joblib``.
"""

import json
import sys
from pathlib import Path

from accelerate import Accelerator
from sklearn.model_selection import GridSearchCV

from skcovid import PrunedCNNClassifier, TransferCNNClassifier, save_model
from skcovid.pruning import StructuredPruner

sys.path.insert(0, str(Path(__file__).parent))  # torchrun runs this file as a script
from conftest import FAST, TrainingBatches, make_images  # noqa: E402


def summary(clf, X):
    """The fitted network, its last training run and its predictions."""
    net = clf.net_
    history = clf.history_  # a PrunedCNNClassifier's is its fine-tuning
    return {
        "net": type(net).__name__,
        "weights": {k: v.tolist() for k, v in net.module_.state_dict().items()},
        "epochs": len(history),
        "valid_loss": [row["valid_loss"] for row in history],
        "batches": dict(net.callbacks_)["batches"].sizes,
        "proba": clf.predict_proba(X).tolist(),
    }


def main(out_dir):
    accelerator = Accelerator(cpu=True)
    X, y = make_images(n_per_class=20, size=24)
    common = {**FAST, "batch_size": 8, "validation_fraction": 0.2, "accelerator": accelerator,
              "callbacks": [("batches", TrainingBatches())]}
    results = {"world_size": accelerator.num_processes, "n_train": 32}
    finetuned = TransferCNNClassifier(**{**common, "max_epochs": 30, "early_stopping": 1})
    results["finetuned"] = summary(finetuned.fit(X, y), X)
    frozen = TransferCNNClassifier(**{**common, "freeze": "backbone", "max_epochs": 3})
    results["frozen"] = summary(frozen.fit(X, y), X)
    results["frozen"]["precomputed"] = frozen.precomputed_features_
    pruned = PrunedCNNClassifier(finetuned, StructuredPruner(ratio=0.5), finetune_epochs=2,
                                 prefit=True).fit(X, y)
    results["pruned"] = {**summary(pruned.estimator_, X), "epochs": len(pruned.history_),
                         "valid_loss": [row["valid_loss"] for row in pruned.history_]}
    search = GridSearchCV(TransferCNNClassifier(**{**common, "freeze": "backbone", "max_epochs": 2}),
                          {"lr": [1e-2, 1e-3]}, cv=2).fit(X, y)
    results["search"] = {"best_params": search.best_params_,
                         "scores": search.cv_results_["mean_test_score"].tolist()}
    if accelerator.is_main_process:
        # A pickle: the test checks that the model keeps the accelerator it was trained with.
        save_model(finetuned, Path(out_dir) / "finetuned.joblib", format="pickle")
    (Path(out_dir) / f"rank{accelerator.process_index}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
