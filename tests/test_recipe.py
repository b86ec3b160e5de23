"""The fine-tuning recipe: head-first epochs, layer-wise learning rates, phased schedules, test-time augmentation."""

import argparse

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback

from skcovid import RECIPES, TransferCNNClassifier, recipe
from skcovid._cli.options import FROM_RECIPE, add_model_options
from skcovid._cli.train import build_estimator
from skcovid._estimators.recipes import DEFAULT_RECIPE
from skcovid._nets.backbones import stage_names

from conftest import FAST


class _Snapshots(Callback):
    """The module's state before training and after every epoch, and each batch's learning rates."""

    def on_train_begin(self, net, **kwargs):
        self.states = [self._state(net)]
        self.lrs = []

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self.lrs.append([group["lr"] for group in net.optimizer_.param_groups])

    def on_epoch_end(self, net, **kwargs):
        self.states.append(self._state(net))

    @staticmethod
    def _state(net):
        return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


def _changed(before, after, prefix):
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_head_epochs_train_the_head_alone_then_the_network(images):
    X, y = images
    snapshots = _Snapshots()
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "dropout": 0.0}, head_epochs=2,
                                callbacks=[("snapshots", snapshots)]).fit(X, y)
    snap = dict(clf.net_.callbacks_)["snapshots"]
    assert len(clf.history_) == 4  # head_epochs come before max_epochs
    for epoch in (1, 2):  # weights and BatchNorm statistics of the backbone held
        assert _changed(snap.states[epoch - 1], snap.states[epoch], "features") == []
        assert _changed(snap.states[epoch - 1], snap.states[epoch], "head")
    for epoch in (3, 4):
        assert _changed(snap.states[epoch - 1], snap.states[epoch], "features")
    module = clf.net_.module_
    assert module.frozen_stages == [] and all(p.requires_grad for p in module.parameters())


@pytest.mark.filterwarnings("ignore:freeze=1 keeps randomly initialised")
def test_head_epochs_release_only_the_stages_freeze_trains(images):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}, head_epochs=1).set_params(freeze=1).fit(X, y)
    module = clf.net_.module_
    stages = stage_names(module.features)
    assert module.frozen_stages == stages[:-1]
    trainable = {name for name in stages
                 if any(p.requires_grad for p in module.features.get_submodule(name).parameters())}
    assert trainable == {stages[-1]}


def test_layer_decay_gives_each_stage_its_rate_and_the_schedule_restarts(images):
    X, y = images
    snapshots = _Snapshots()
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "batch_size": 4}, head_epochs=1, layer_decay=0.5,
                                lr_schedule="onecycle", callbacks=[("snapshots", snapshots)]).fit(X, y)
    lrs = np.array(dict(clf.net_.callbacks_)["snapshots"].lrs)  # (batches, groups)
    n_stages = len(stage_names(clf.net_.module_.features))
    assert lrs.shape == (3 * 6, n_stages + 1)  # 24 images in batches of 4; a group per stage and the head
    # Every group on the same schedule, at lr * 0.5**k for the k-th stage below the head.
    ratios = lrs / lrs[:, -1:]
    np.testing.assert_allclose(ratios, np.broadcast_to(0.5 ** np.arange(n_stages, -1, -1), lrs.shape),
                               rtol=1e-6)
    # One cycle for the head epoch (6 batches), another for the 2 epochs after it: each starts at lr/25,
    # rises to lr and ends far below.
    head = lrs[:, -1]
    for phase in (head[:6], head[6:]):
        assert phase[0] == pytest.approx(FAST["lr"] / 25)
        assert phase.max() == pytest.approx(FAST["lr"], rel=0.1)
        assert phase[-1] < FAST["lr"] / 100


def test_without_layer_decay_one_group(images):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    assert len(clf.net_.optimizer_.param_groups) == 1


@pytest.mark.parametrize("tta, flips", [("flip", [(), (2,)]), ("flips", [(), (2,), (1,), (1, 2)])])
def test_tta_averages_the_probabilities_of_the_mirror_images(images, tta, flips):
    X, y = images  # 24 px images at image_size 24: no resizing between the flips
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "image_size": 24}).fit(X, y)
    views = [clf.predict_proba(np.flip(X, axis=dims).copy() if dims else X) for dims in flips]
    plain = views[0]
    clf.set_params(tta=tta)  # prediction only: the fitted network is the same
    averaged = clf.predict_proba(X)
    np.testing.assert_allclose(averaged, np.mean(views, axis=0), atol=1e-6)
    assert not np.allclose(averaged, plain)


def test_tta_is_used_by_the_fitted_temperature(images):
    X, y = images
    params = {**FAST, "max_epochs": 2, "validation_fraction": 0.5, "calibration": "temperature"}
    with_tta = TransferCNNClassifier(**{**params, "tta": "flip"}).fit(X, y)
    without = TransferCNNClassifier(**params).fit(X, y)
    # The same training (tta plays no part in it), a temperature fitted to other probabilities.
    for a, b in zip(with_tta.net_.module_.state_dict().values(), without.net_.module_.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert with_tta.temperature_ != pytest.approx(without.temperature_, abs=1e-6)


@pytest.mark.parametrize("params, match", [
    ({"freeze": "backbone", "head_epochs": 1}, "freeze='backbone' never lets it"),
])
def test_head_epochs_errors(images, params, match):
    X, y = images
    with pytest.raises(ValueError, match=match):
        TransferCNNClassifier(**{**FAST, **params}).fit(X, y)


@pytest.mark.parametrize("params", [{"head_epochs": -1}, {"layer_decay": 0.0}, {"layer_decay": 1.5},
                                    {"tta": "rotate"}])
def test_invalid_recipe_parameters(images, params):
    X, y = images
    with pytest.raises(ValueError, match=next(iter(params))):
        TransferCNNClassifier(**{**FAST, **params}).fit(X, y)


def test_recipe_is_plain_parameters():
    clf = recipe("finetune", random_state=3, image_size=160)
    params = clf.get_params()
    assert {k: params[k] for k in RECIPES["finetune"] if k != "image_size"} == {
        k: v for k, v in RECIPES["finetune"].items() if k != "image_size"}
    assert params["random_state"] == 3 and params["image_size"] == 160  # the arguments override the recipe
    assert clone(clf).get_params() == params
    assert recipe("frozen").freeze == "backbone"
    # One default: the classifier's own, the recipe's, the pruned classifier's and the command's.
    assert recipe().get_params() == TransferCNNClassifier().get_params()
    assert recipe("frozen-lite2").get_params() == TransferCNNClassifier().get_params()
    assert {k: v for k, v in recipe("frozen").get_params().items() if k in RECIPES["frozen"]} == {
        "backbone": "efficientnet_lite0", "image_size": 224, "crop": None, "intensity": None, "tta": None,
        "calibration": None}
    with pytest.raises(ValueError, match="recipe 'fast' is not one of"):
        recipe("fast")


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    return parser.parse_args(list(argv))


def test_command_line_starts_from_the_recipe():
    args = _parse()
    assert args.freeze is FROM_RECIPE and args.recipe == DEFAULT_RECIPE == "frozen-lite2"
    clf = build_estimator(args, verbose=0)
    assert {k: clf.get_params()[k] for k in RECIPES[DEFAULT_RECIPE]} == dict(RECIPES[DEFAULT_RECIPE])
    assert clf.get_params() == recipe(verbose=0, random_state=args.random_state).get_params()
    clf = build_estimator(_parse("--recipe", "frozen", "--epochs", "3", "--tta", "flip"), verbose=0)
    assert (clf.freeze, clf.max_epochs, clf.tta, clf.head_epochs) == ("backbone", 3, "flip", 0)
    clf = build_estimator(_parse("--recipe", "finetune", "--head-epochs", "0", "--layer-decay", "1"), verbose=0)
    assert (clf.freeze, clf.head_epochs, clf.layer_decay) == ("none", 0, 1.0)
    clf = build_estimator(_parse("--crop", "none", "--image-size", "224"), verbose=0)
    assert (clf.backbone, clf.crop, clf.image_size) == ("efficientnet_lite2", None, 224)


def test_exported_model_averages_the_same_views(images, tmp_path):
    pytest.importorskip("onnxruntime")
    from skcovid import export, load_onnx

    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 2, "tta": "flips"}).fit(X, y)
    export(clf, tmp_path / "model.onnx")
    model = load_onnx(tmp_path / "model.onnx")
    assert model.metadata["tta"] == "flips"
    np.testing.assert_allclose(model.predict_proba(X), clf.predict_proba(X), atol=1e-5)
