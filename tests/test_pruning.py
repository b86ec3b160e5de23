"""Pruning stages and PrunedCNNClassifier."""

import copy
import pickle
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from skcovid import PrunedCNNClassifier, TransferCNNClassifier, load_model, save_model
from skcovid._engine.distillation import Distillation, distillation_loss
from skcovid._engine.settings import TrainingSettings
from skcovid._estimators.pruned import cycle_epochs
from skcovid._nets.build import build_transfer_net
from skcovid.metrics import SCORING
from skcovid.pruning import (
    MagnitudePruner,
    StructuredPruner,
    count_flops,
    count_params,
    weight_sparsity,
)

from conftest import FAST


def _settings():
    """The training settings of the tests' fast classifier (fp32)."""
    return TrainingSettings.from_params(TransferCNNClassifier(**FAST).get_params(deep=False))


def _network(backbone="simple_cnn", image_size=32, **params):
    """The untrained network TransferCNNClassifier.fit would train, for the pruners to work on.

    Built as fit builds it; fitting the classifier for it would only add time.
    """
    torch.manual_seed(0)
    p = TransferCNNClassifier(**{**FAST, "backbone": backbone, "image_size": image_size, **params}).get_params()
    return build_transfer_net(p["backbone"], p["weights"], p["image_size"], 2, freeze=p["freeze"],
                              pooling=p["pooling"], hidden_units=p["hidden_units"], dropout=p["dropout"])


def _convs(module):
    return {n: m for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}


# ----------------------------------------------------------- magnitude

@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_magnitude_global_sparsity_equals_target(sparsity):
    net = _network()
    pruner = MagnitudePruner(sparsity=sparsity, scope="global").fit(net)
    pruned = pruner.transform(net)
    n = pruner.n_weights_
    assert weight_sparsity(pruned) == pytest.approx(round(sparsity * n) / n, abs=1e-12)
    assert weight_sparsity(net) == 0.0  # the input module is left alone
    # Global: the smallest magnitudes anywhere go, so layers end up unequally sparse.
    per_layer = [weight_sparsity(pruned, [name]) for name in pruner.layers_]
    assert max(per_layer) - min(per_layer) > 0.05
    # Every kept weight is at least as large as every pruned one.
    kept = torch.cat([pruned.get_submodule(n).weight.flatten() for n in pruner.layers_])
    orig = torch.cat([net.get_submodule(n).weight.flatten() for n in pruner.layers_])
    assert orig[kept == 0].abs().max() <= orig[kept != 0].abs().min()


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_magnitude_layer_sparsity_equals_target_in_every_layer(sparsity):
    net = _network(hidden_units=(16,))
    pruner = MagnitudePruner(sparsity=sparsity, scope="layer").fit(net)
    pruned = pruner.transform(net)
    for name in pruner.layers_:
        n = pruned.get_submodule(name).weight.numel()
        assert weight_sparsity(pruned, [name]) == pytest.approx(round(sparsity * n) / n, abs=1e-12)


def test_magnitude_masks_are_permanent_and_module_copies():
    net = _network()
    pruned = MagnitudePruner(sparsity=0.5).fit(net).transform(net)
    assert not any(n.endswith("_orig") for n, _ in pruned.named_parameters())
    assert not any(n.endswith("_mask") for n, _ in pruned.named_buffers())
    assert all(not m._forward_pre_hooks for m in pruned.modules())
    for restored in (copy.deepcopy(pruned), pickle.loads(pickle.dumps(pruned))):
        assert weight_sparsity(restored) == weight_sparsity(pruned)


def test_polynomial_schedule_matches_formula():
    pruner = MagnitudePruner(sparsity=0.8, initial_sparsity=0.1, power=3, begin_step=2, end_step=12,
                             schedule="polynomial")
    for step, expected in [(0, 0.1), (2, 0.1), (7, 0.8 - 0.7 * 0.5 ** 3), (10, 0.8 - 0.7 * 0.2 ** 3),
                           (12, 0.8), (20, 0.8)]:
        assert pruner.schedule_value(step) == pytest.approx(expected)
    for step in range(2, 13):
        s = 0.8 + (0.1 - 0.8) * (1 - (step - 2) / 10) ** 3
        assert pruner.schedule_value(step) == pytest.approx(s)
    with pytest.raises(ValueError, match="end_step is None"):
        MagnitudePruner(schedule="polynomial").schedule_value(3)


def test_polynomial_pruning_during_finetuning_follows_the_schedule(images):
    X, y = images  # 24 images, batch 16: 2 steps per epoch
    pruner = MagnitudePruner(sparsity=0.6, initial_sparsity=0.0, schedule="polynomial", frequency=1, power=2)
    clf = PrunedCNNClassifier(TransferCNNClassifier(**FAST), pruner, finetune_epochs=4, finetune_lr=1e-3).fit(X, y)
    callback = dict(clf.estimator_.net_.callbacks_)["polynomial_decay"]
    steps = [step for step, _ in callback.updates_]
    assert steps == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    n = clf.pruner_.n_weights_
    for step, reached in callback.updates_:
        assert reached == pytest.approx(clf.pruner_.schedule_value(step, 8), abs=1 / n)
    module = clf.estimator_.net_.module_
    assert weight_sparsity(module) == pytest.approx(0.6, abs=1 / n)
    assert not any(n.endswith("_orig") for n, _ in module.named_parameters())


def test_oneshot_zeros_stay_zero_during_finetuning(images):
    X, y = images
    clf = PrunedCNNClassifier(TransferCNNClassifier(**FAST), MagnitudePruner(0.5), finetune_epochs=3,
                              finetune_lr=1e-2).fit(X, y)
    module = clf.estimator_.net_.module_
    assert weight_sparsity(module) == pytest.approx(0.5, abs=1e-4)
    assert clf.sparsity_ > 0.45


# ---------------------------------------------------------- structured

@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_structured_cuts_channels_params_and_flops_in_proportion(ratio):
    net = _network(hidden_units=(32,))
    x = torch.rand(4, 1, 32, 32)
    pruned = StructuredPruner(ratio=ratio).fit(net, x).transform(net)
    for name, conv in _convs(net).items():
        kept = _convs(pruned)[name].out_channels
        assert kept == conv.out_channels - int(ratio * conv.out_channels)
    assert pruned.head[-1].out_features == 2
    keep = (1 - ratio) ** 2
    assert count_params(pruned) / count_params(net) == pytest.approx(keep, abs=0.05)
    shape = (1, 1, 32, 32)
    assert count_flops(pruned, shape) / count_flops(net, shape) == pytest.approx(keep, abs=0.05)
    assert count_params(net) == count_params(_network(hidden_units=(32,)))  # input untouched


FAMILIES = ["resnet18", "vgg11", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
            "efficientnet_b0", "efficientnet_lite0", "simple_cnn", "inception_v3"]


@pytest.mark.filterwarnings("ignore:freeze=2 keeps randomly initialised")
@pytest.mark.parametrize("backbone", FAMILIES)
def test_structured_pruning_every_family_gives_valid_outputs(backbone):
    size = 80 if backbone == "inception_v3" else 64
    net = _network(backbone, image_size=size, freeze=2)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    x = torch.rand(3, 1, size, size)
    pruned = StructuredPruner(ratio=0.3).fit(net, x).transform(net)
    out = pruned.eval()(x)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    shape = (1, 1, size, size)
    assert count_flops(pruned, shape) < 0.75 * count_flops(net, shape)
    assert count_params(pruned) < 0.75 * count_params(net)
    assert {n for n, p in pruned.named_parameters() if not p.requires_grad} == frozen


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor", "bn_scale"])
def test_structured_importances(importance):
    net = _network()
    x, y = torch.rand(8, 1, 32, 32), torch.tensor([0, 1] * 4)
    pruner = StructuredPruner(ratio=0.5, importance=importance).fit(net, x, y)
    pruned = pruner.transform(net)
    assert pruned(x).shape == (8, 2)
    assert count_params(pruned) < 0.35 * count_params(net)


def test_taylor_needs_y():
    with pytest.raises(ValueError, match="importance='taylor' needs y"):
        StructuredPruner(importance="taylor").fit(_network(), torch.rand(2, 1, 32, 32))


def test_structured_options():
    net = _network()
    x = torch.rand(2, 1, 32, 32)
    rounded = StructuredPruner(ratio=0.4, round_to=8).fit(net, x).transform(net)
    assert all(c.out_channels % 8 == 0 for c in _convs(rounded).values())
    glob = StructuredPruner(ratio=0.4, global_pruning=True).fit(net, x).transform(net)
    widths = [c.out_channels / _convs(net)[n].out_channels for n, c in _convs(glob).items()]
    assert max(widths) - min(widths) > 0.02  # global ranking prunes layers unevenly


def test_global_pruning_caps_what_any_layer_loses():
    net = _network(hidden_units=(32,))
    x = torch.rand(4, 1, 32, 32)

    def kept_fractions(cap):
        pruned = StructuredPruner(ratio=0.7, global_pruning=True, max_layer_ratio=cap).fit(net, x).transform(net)
        layers = {**_convs(net), "head.1": net.head[1]}
        widths = {**{n: c.out_channels for n, c in _convs(pruned).items()}, "head.1": pruned.head[1].out_features}
        return {n: widths[n] / getattr(m, "out_channels", getattr(m, "out_features", None))
                for n, m in layers.items()}

    uncapped, capped = kept_fractions(1.0), kept_fractions(0.75)
    assert min(uncapped.values()) < 0.25  # without the cap global ranking cuts a layer below a quarter
    assert min(capped.values()) >= 0.25 and min(capped.values()) == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("global_pruning", [False, True])
def test_target_flops_is_reached_by_searching_the_ratio(global_pruning):
    net = _network(hidden_units=(32,))
    x, shape = torch.rand(4, 1, 32, 32), (1, 1, 32, 32)
    pruner = StructuredPruner(target_flops=0.4, global_pruning=global_pruning).fit(net, x)
    kept = count_flops(pruner.transform(net), shape) / count_flops(net, shape)
    assert kept == pytest.approx(0.4, abs=0.02)
    assert 0.2 < pruner.ratio_ < 0.6
    assert StructuredPruner().fit(net, x).ratio_ == 0.5  # neither set: the old default
    assert StructuredPruner(ratio=0.3).fit(net, x).ratio_ == 0.3


def test_taylor_gradients_add_up_over_batches():
    net = _network()
    x, y = torch.rand(16, 1, 32, 32), torch.tensor([0, 1] * 8)
    one = StructuredPruner(importance="taylor").fit(net, x, y)
    batched = StructuredPruner(importance="taylor").fit(net, DataLoader(TensorDataset(x, y), batch_size=4))
    assert one.gradients_.keys() == batched.gradients_.keys() and batched.example_input_shape_ == (1, 1, 32, 32)
    for name, gradient in one.gradients_.items():
        torch.testing.assert_close(batched.gradients_[name], gradient, rtol=1e-4, atol=1e-7)
    # Eval mode: the same channels go, and the network given is left in its mode without gradients.
    assert [c.out_channels for c in _convs(one.transform(net)).values()] == \
        [c.out_channels for c in _convs(batched.transform(net)).values()]
    assert net.training and all(p.grad is None for p in net.parameters())


def test_cycles_take_equal_steps_toward_the_target():
    steps = [StructuredPruner(ratio=0.5).for_cycle(i, 3) for i in (1, 2, 3)]
    assert [p.ratio for p in steps] == pytest.approx([1 / 6, 1 / 5, 1 / 4])  # of the channels left
    assert np.prod([1 - p.max_layer_ratio for p in steps]) == pytest.approx(0.1)  # the cap over all steps
    flops = StructuredPruner(target_flops=0.4)
    assert flops.for_cycle(1, 2).target_flops == pytest.approx(0.7)
    assert flops.for_cycle(2, 2, flops_kept=0.72).target_flops == pytest.approx(0.4 / 0.72)
    one_shot = MagnitudePruner(sparsity=0.6)
    assert [one_shot.for_cycle(i, 3).sparsity for i in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.6])
    poly = MagnitudePruner(sparsity=0.6, initial_sparsity=0.3, schedule="polynomial")
    steps = [poly.for_cycle(i, 3) for i in (1, 2, 3)]
    assert [p.initial_sparsity for p in steps] == pytest.approx([0.3, 0.4, 0.5])
    assert [p.sparsity for p in steps] == pytest.approx([0.4, 0.5, 0.6])
    assert cycle_epochs(5, 3) == [1, 2, 2] and cycle_epochs(4, 4) == [1] * 4
    assert cycle_epochs(2, 4) == [0, 0, 1, 1] and cycle_epochs(0, 2) == [0, 0]


def test_a_pruner_pickled_by_an_earlier_version_loads():
    old = StructuredPruner(ratio=0.3)
    del old.target_flops, old.max_layer_ratio
    old.iterative_steps = 3  # retired: it pruned as one step does
    restored = pickle.loads(pickle.dumps(old))
    assert restored.get_params() == StructuredPruner(ratio=0.3).get_params()
    assert not hasattr(restored, "iterative_steps")


@pytest.mark.parametrize(
    "pruner, match",
    [(StructuredPruner(ratio=1.0), "ratio"), (StructuredPruner(importance="random"), "importance"),
     (StructuredPruner(round_to=0), "round_to"), (MagnitudePruner(sparsity=-0.1), "sparsity"),
     (MagnitudePruner(scope="net"), "scope"), (MagnitudePruner(schedule="cubic"), "schedule"),
     (MagnitudePruner(sparsity=0.5, initial_sparsity=0.6), "initial_sparsity"),
     (StructuredPruner(target_flops=0), "target_flops"), (StructuredPruner(max_layer_ratio=0), "max_layer_ratio"),
     (StructuredPruner(ratio=0.3, target_flops=0.5), "exclusive"),
     (StructuredPruner(target_flops=0.001, max_layer_ratio=0.5), "target_flops=0.001 is out of reach")],
)
def test_bad_pruner_parameters(pruner, match):
    with pytest.raises(ValueError, match=match):
        pruner.fit(_network(), torch.rand(2, 1, 32, 32))


def test_pruners_are_sklearn_style():
    pruner = StructuredPruner(ratio=0.3, importance="l2")
    assert clone(pruner).get_params() == pruner.get_params()
    assert pruner.set_params(ratio=0.4).ratio == 0.4
    assert clone(MagnitudePruner(sparsity=0.7)).sparsity == 0.7


# ------------------------------------------------- PrunedCNNClassifier

def _fast_pruned(**params):
    defaults = dict(estimator=TransferCNNClassifier(**FAST), pruner=StructuredPruner(ratio=0.25), finetune_epochs=5,
                    finetune_lr=1e-2)
    return PrunedCNNClassifier(**{**defaults, **params})




def test_pruning_report(images):
    X, y = images
    clf = PrunedCNNClassifier(TransferCNNClassifier(**FAST), StructuredPruner(ratio=0.5),
                              finetune_epochs=2, finetune_lr=1e-3).fit(X, y)
    report = clf.pruning_report()
    assert report["n_params"] == clf.n_params_ == count_params(clf.estimator_.net_.module_)
    assert report["flops_reduction"] == pytest.approx(1 - clf.flops_ / clf.flops_before_)
    assert 0.6 < report["params_reduction"] < 0.9 and 0.6 < report["flops_reduction"] < 0.9
    assert report["model_size_bytes"] < 0.5 * report["model_size_bytes_before"]
    assert [h["epoch"] for h in clf.history_] == [1, 2]


def test_prefit_reuses_and_does_not_modify_the_estimator(images):
    X, y = images
    base = TransferCNNClassifier(**FAST).fit(X, y)
    proba = base.predict_proba(X)
    n_before = count_params(base.net_.module_)
    clf = PrunedCNNClassifier(base, StructuredPruner(ratio=0.5), finetune_epochs=0, prefit=True).fit(X, y)
    np.testing.assert_array_equal(base.predict_proba(X), proba)
    assert count_params(base.net_.module_) == n_before == clf.n_params_before_
    assert clf.history_ == [] and clf.n_params_ < n_before
    assert len(clf.estimator_.history_) == len(base.history_)  # trained once, not again
    with pytest.raises(ValueError, match="fitted on classes"):
        PrunedCNNClassifier(base, prefit=True).fit(X, np.where(y == "COVID", "a", "b"))


def test_grid_search_over_nested_parameters(image_folder):
    X, y = image_folder
    search = GridSearchCV(
        _fast_pruned(estimator=TransferCNNClassifier(**FAST), finetune_epochs=2),
        {"pruner__ratio": [0.3, 0.5], "estimator__lr": [1e-2, 1e-3]},
        scoring=SCORING, refit="f1", cv=StratifiedKFold(2, shuffle=True, random_state=0), error_score="raise",
    ).fit(X, y)
    ratios = [p["pruner__ratio"] for p in search.cv_results_["params"]]
    assert sorted(ratios) == [0.3, 0.3, 0.5, 0.5]
    assert search.best_estimator_.pruner_.ratio == search.best_params_["pruner__ratio"]


@pytest.mark.parametrize("pruner", [StructuredPruner(ratio=0.5), MagnitudePruner(sparsity=0.5),
                                    MagnitudePruner(sparsity=0.9, schedule="polynomial", frequency=1)])
def test_persistence_identical_probabilities(tmp_path, image_folder, pruner):
    X, y = image_folder
    clf = PrunedCNNClassifier(TransferCNNClassifier(**FAST), pruner, finetune_epochs=2,
                              finetune_lr=1e-3).fit(X, y)
    proba = clf.predict_proba(X)
    path = tmp_path / "pruned.joblib"
    joblib.dump(clf, path)
    restored = joblib.load(path)
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)  # pickling left the live model alone
    assert restored.pruning_report() == clf.pruning_report()


def test_magnitude_pruned_model_is_smaller_on_disk(tmp_path, images):
    X, y = images
    dense = TransferCNNClassifier(**FAST, lr_schedule="cosine").fit(X, y)  # its scheduler holds the optimizer
    sizes = {}
    for sparsity in (0.5, 0.9):
        clf = PrunedCNNClassifier(dense, MagnitudePruner(sparsity=sparsity), finetune_epochs=0,
                                  prefit=True).fit(X, y)
        sizes[sparsity] = clf.model_size_bytes_ / clf.model_size_bytes_before_
        # The pickled classifier (without its `estimator` parameter) shrinks the same way.
        clf.set_params(estimator=None)
        joblib.dump(clf, tmp_path / f"{sparsity}.joblib")
    assert sizes[0.5] < 0.6 and sizes[0.9] < 0.2
    # Neither the optimizer state nor a scheduler referring to it is saved.
    assert (tmp_path / "0.5.joblib").stat().st_size < 0.7 * clf.model_size_bytes_before_
    assert (tmp_path / "0.9.joblib").stat().st_size < 0.45 * (tmp_path / "0.5.joblib").stat().st_size


@pytest.mark.parametrize("unfreeze", [True, False])
def test_unfreeze_controls_which_stages_finetune(simple_cnn_weights, images, unfreeze):
    X, y = images
    base = TransferCNNClassifier(**{**FAST, "weights": simple_cnn_weights, "freeze": "backbone"}).fit(X, y)
    clf = PrunedCNNClassifier(base, MagnitudePruner(sparsity=0.3), finetune_epochs=2, finetune_lr=1e-2,
                              unfreeze=unfreeze, prefit=True).fit(X, y)
    pruned = clf.pruner_.transform(base.net_.module_)  # the network right before fine-tuning
    module = clf.estimator_.net_.module_
    stem = module.features.block1
    changed = not torch.equal(stem[0].weight, pruned.features.block1[0].weight)
    stats_changed = not torch.equal(stem[1].running_mean, pruned.features.block1[1].running_mean)
    assert changed == stats_changed == unfreeze
    assert all(p.requires_grad == unfreeze for p in module.features.parameters())


# ------------------------------------------------ distillation, cycles

def test_distillation_loss_matches_the_formula():
    student = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2], [-1.5, 0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0, 3.0], [-1.0, 2.0, 0.0], [0.5, 0.5, -2.0]])
    y = torch.tensor([0, 2, 1])
    alpha, T = 0.7, 3.0

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    s, t = student.double().numpy(), teacher.double().numpy()
    p_teacher, p_student = softmax(t / T), softmax(s / T)
    kl = np.mean(np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1))
    ce = np.mean(-np.log(softmax(s)[np.arange(3), y.numpy()]))
    expected = alpha * T ** 2 * kl + (1 - alpha) * ce
    loss = distillation_loss(student, teacher, y, nn.CrossEntropyLoss(), alpha=alpha, temperature=T)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # The training loss reads the teacher's logits from the inputs, or runs the teacher on the images.
    net = SimpleNamespace(criterion_=nn.CrossEntropyLoss())
    hook = Distillation(None, alpha=alpha, temperature=T, images=None, settings=_settings())
    assert hook(net, student, y, {"x": None, "teacher": teacher}).item() == pytest.approx(expected, rel=1e-5)
    linear = nn.Linear(4, 3)
    x = torch.rand(3, 4)
    hook = Distillation(linear, alpha=alpha, temperature=T, images=None, settings=_settings())
    expected = distillation_loss(student, linear(x), y, nn.CrossEntropyLoss(), alpha=alpha, temperature=T)
    assert hook(net, student, y, x).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("augment, n_taught", [(None, 24), ("flip", 2 * 24)])
def test_teacher_logits_once_per_image_unless_augmented(images, monkeypatch, augment, n_taught):
    X, y = images
    taught, teach = [], Distillation._teach
    monkeypatch.setattr(Distillation, "_teach", lambda self, x: taught.append(len(x)) or teach(self, x))
    clf = PrunedCNNClassifier(TransferCNNClassifier(**{**FAST, "augment": augment}), StructuredPruner(ratio=0.5),
                              finetune_epochs=2, cycles=2, distillation_alpha=0.5).fit(X, y)
    assert sum(taught) == n_taught  # 24 training images: once, or on each of the 2 epochs' batches
    assert [c["epochs"] for c in clf.cycles_] == [1, 1]


@pytest.mark.parametrize("pruner", [StructuredPruner(ratio=0.5),
                                    MagnitudePruner(sparsity=0.5, schedule="polynomial", frequency=1)])
def test_distillation_trains_and_the_model_does_not_keep_the_teacher(images, tmp_path, pruner):
    X, y = images
    fits = {alpha: _fast_pruned(pruner=pruner, finetune_epochs=2, cycles=2, distillation_alpha=alpha).fit(X, y)
            for alpha in (0.0, 0.9)}
    clf, plain = fits[0.9], fits[0.0]
    assert [h["train_loss"] for h in clf.history_] != [h["train_loss"] for h in plain.history_]
    assert clf.estimator_.net_.training_loss is None
    # The pickle holds the pruned network only: a teacher would add the unpruned one.
    assert abs(len(pickle.dumps(clf)) - len(pickle.dumps(plain))) < 0.1 * clf.model_size_bytes_before_
    loaded = load_model(save_model(clf, tmp_path / "distilled.skcovid"), runtime="torch")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.get_params()["distillation_alpha"] == 0.9 and loaded.cycles == 2
    assert loaded.pruning_report() == clf.pruning_report()


def test_cycles_prune_and_finetune_in_turns(images):
    X, y = images
    clf = _fast_pruned(pruner=StructuredPruner(ratio=0.5), finetune_epochs=5, cycles=3).fit(X, y)
    report = clf.pruning_report()
    cycles = report["cycles"]
    assert [c["cycle"] for c in cycles] == [1, 2, 3] and [c["epochs"] for c in cycles] == [1, 2, 2]
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3, 4, 5]
    assert [c["ratio"] for c in cycles] == pytest.approx([1 / 6, 1 / 5, 1 / 4])
    assert report["ratio"] == pytest.approx(0.5)
    flops = [c["flops"] for c in cycles]
    assert clf.flops_before_ > flops[0] > flops[1] > flops[2] == clf.flops_
    assert cycles[-1]["n_params"] == clf.n_params_ and all(0 <= c["train_acc"] <= 1 for c in cycles)
    base = _network(image_size=FAST["image_size"])
    for name, conv in _convs(clf.estimator_.net_.module_).items():  # each step rounds the channels kept down
        assert 0 <= _convs(base)[name].out_channels / 2 - conv.out_channels <= 2
    sparse = _fast_pruned(pruner=MagnitudePruner(sparsity=0.6), finetune_epochs=3, cycles=3).fit(X, y)
    nonzero = [c["n_nonzero_params"] for c in sparse.cycles_]
    assert nonzero[0] > nonzero[1] > nonzero[2] == sparse.n_nonzero_params_
    assert weight_sparsity(sparse.estimator_.net_.module_) == pytest.approx(0.6, abs=1e-3)
    assert sparse.pruning_report()["ratio"] is None


def test_cycles_reach_a_flops_target_at_the_last_cycle(images):
    X, y = images
    clf = _fast_pruned(pruner=StructuredPruner(target_flops=0.4, global_pruning=True), finetune_epochs=2,
                       cycles=2).fit(X, y)
    report = clf.pruning_report()
    assert report["flops_kept"] == pytest.approx(0.4, abs=0.02)
    assert report["cycles"][0]["flops"] / clf.flops_before_ == pytest.approx(0.7, abs=0.02)
    assert 0.2 < report["ratio"] < 0.6 and clf.pruner_.ratio_ == report["cycles"][-1]["ratio"]


def test_grid_search_over_distillation_and_cycles(images):
    X, y = images
    search = GridSearchCV(_fast_pruned(finetune_epochs=2, cycles=2),
                          {"distillation_alpha": [0.0, 0.5], "distillation_temperature": [2.0]},
                          cv=StratifiedKFold(2, shuffle=True, random_state=0), error_score="raise").fit(X, y)
    assert search.best_estimator_.distillation_alpha == search.best_params_["distillation_alpha"]
    assert len(search.best_estimator_.cycles_) == 2


@pytest.mark.parametrize("params, match", [({"distillation_alpha": 1.5}, "distillation_alpha"),
                                           ({"distillation_temperature": 0}, "distillation_temperature"),
                                           ({"cycles": 0}, "cycles")])
def test_bad_classifier_parameters(images, params, match):
    with pytest.raises(ValueError, match=match):
        _fast_pruned(**params).fit(*images)
