"""The scikit-learn toolbox on file-path X: search, cross-validation, pipelines."""

import numpy as np
import pytest
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skcovid import TransferCNNClassifier
from skcovid.metrics import SCORING

from conftest import FAST

CV = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)


@pytest.fixture
def clf():
    return TransferCNNClassifier(**FAST)


def test_cross_validate_with_scoring(image_folder, clf):
    X, y = image_folder
    scores = cross_validate(clf, X, y, cv=CV, scoring=SCORING, error_score="raise")
    for name in SCORING:
        values = scores[f"test_{name}"]
        assert values.shape == (3,) and np.all((values >= 0) & (values <= 1))
    assert scores["test_accuracy"].mean() > 0.7


def test_grid_search_refit_f1(image_folder, clf):
    X, y = image_folder
    grid = {"lr": [1e-2, 1e-3], "batch_size": [8, 16], "optimizer": ["adam", "adamax"]}
    cv = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    search = GridSearchCV(clf, grid, scoring=SCORING, refit="f1", cv=cv, error_score="raise").fit(X, y)
    assert len(search.cv_results_["params"]) == 8
    assert search.best_params_ in search.cv_results_["params"]
    assert search.best_estimator_.predict(X[:3]).shape == (3,)
    best = search.cv_results_["mean_test_f1"][search.best_index_]
    assert best == np.max(search.cv_results_["mean_test_f1"])


def test_randomized_search(image_folder, clf):
    X, y = image_folder
    search = RandomizedSearchCV(
        clf, {"dropout": [0.0, 0.2, 0.4], "hidden_units": [(), (16,)], "pooling": ["avg", "max"]},
        n_iter=3, cv=CV, scoring="accuracy", random_state=0, error_score="raise",
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 3


def test_pipeline(image_folder, clf):
    X, y = image_folder
    pipe = Pipeline([("identity", FunctionTransformer()), ("clf", clf)]).fit(X, y)
    np.testing.assert_array_equal(pipe.predict_proba(X), pipe[-1].predict_proba(X))
    assert clone(pipe).get_params()["clf__backbone"] == "simple_cnn"


def test_imbalanced_learn_oversampling_pipeline(image_folder, clf):
    X, y = image_folder
    keep = np.r_[np.flatnonzero(y == "COVID"), np.flatnonzero(y == "non-COVID")[:4]]
    X, y = X[keep], y[keep]  # 12 COVID, 4 non-COVID
    pipe = make_imb_pipeline(RandomOverSampler(random_state=0), clf)
    pipe.fit(X.reshape(-1, 1), y)  # imbalanced-learn samplers take 2-D X: one column of paths
    model = pipe[-1]
    batches = model.net_.history[0]["batches"]
    assert sum(b["train_batch_size"] for b in batches) == 24  # both classes oversampled to 12
    assert pipe.predict(X).shape == (len(X),)
