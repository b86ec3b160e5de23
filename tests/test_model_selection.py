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


# ------------------------------------------------------------ blocked splits
def _numbered(n_per_class):
    """Paths whose plain sort is not their scan order ("s (10)" before "s (2)"), shuffled."""
    X = [f"/data/{label}/s ({i}).png" for label in ("COVID", "non-COVID") for i in range(1, n_per_class + 1)]
    y = np.repeat(["COVID", "non-COVID"], n_per_class)
    order = np.random.RandomState(0).permutation(len(X))
    return np.asarray(X, dtype=object)[order], y[order]


def test_blocks_follow_the_natural_order_within_each_class():
    from skcovid.model_selection import BlockedStratifiedKFold

    X, y = _numbered(12)
    blocks = BlockedStratifiedKFold(block_size=5).blocks(X, y)
    number = np.array([int(x.split("(")[1].split(")")[0]) for x in X])
    for label, first in (("COVID", 0), ("non-COVID", 3)):
        members = y == label
        # slices 1-5, 6-10, 11-12 of each class, whatever order X came in
        np.testing.assert_array_equal(blocks[members], first + (number[members] - 1) // 5)
    given = BlockedStratifiedKFold(block_size=5, order="given").blocks(X, y)
    assert not np.array_equal(given, blocks)
    np.testing.assert_array_equal(given[y == "COVID"], np.arange(12) // 5)


@pytest.mark.parametrize("shuffle", [False, True])
def test_blocked_folds_keep_blocks_whole_and_classes_balanced(shuffle):
    from skcovid.model_selection import BlockedStratifiedKFold

    X, y = _numbered(40)
    cv = BlockedStratifiedKFold(n_splits=4, block_size=5, shuffle=shuffle, random_state=0)
    blocks = cv.blocks(X, y)
    seen = []
    for train, test in cv.split(X, y):
        assert not set(blocks[train]) & set(blocks[test])
        assert np.mean(y[test] == "COVID") == 0.5
        seen.extend(test)
    assert sorted(seen) == list(range(len(X))) and cv.get_n_splits() == 4


def test_blocked_split_in_cross_validate():
    from sklearn.linear_model import LogisticRegression

    from skcovid.model_selection import BlockedStratifiedKFold

    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 30)
    X = rng.rand(60, 3) + y[:, None]
    scores = cross_validate(LogisticRegression(), X, y, cv=BlockedStratifiedKFold(3, block_size=10))
    assert scores["test_score"].shape == (3,)


@pytest.mark.parametrize("params, message", [
    ({"n_splits": 1}, "n_splits must be an integer of at least 2"),
    ({"block_size": 0}, "block_size must be an integer of at least 1"),
    ({"order": "sorted"}, "order='sorted' is not valid"),
])
def test_blocked_split_errors(params, message):
    from skcovid.model_selection import BlockedStratifiedKFold

    with pytest.raises(ValueError, match=message):
        BlockedStratifiedKFold(**params)
