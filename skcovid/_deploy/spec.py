"""The safe format's JSON spec of an estimator: plain values, estimators and networks, both ways.

What a spec holds is described in :mod:`skcovid._deploy.modelfile`; building
an estimator from one runs no code from the file.
"""

import inspect
import json
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator
from skorch.dataset import Dataset
from skorch.history import History
from skorch.utils import get_map_location
from torch import nn
from torch.utils.data import DataLoader

from skcovid._core.compat import validate_parameters
from skcovid._core.estimator import upgraded_params
from skcovid._core.files import jsonable
from skcovid._deploy.limits import (
    MAX_BATCH_SIZE,
    MAX_HEAD_UNITS,
    check_architecture,
    check_array_spec,
    check_classes,
    check_decision,
    check_image_size,
    is_count,
)
from skcovid._engine.net import DEVICE_TYPES, OPTIMIZERS, PRECISIONS, SkorchNet, is_device
from skcovid._estimators.classifier import TransferCNNClassifier
from skcovid._estimators.pruned import PrunedCNNClassifier
from skcovid._imaging.window import n_channels
from skcovid._nets.backbones import build_backbone, is_backbone_name
from skcovid._nets.network import TransferNet, eval_mode
from skcovid._nets.sparse import pack_module, unpack_module
from skcovid.pruning import MagnitudePruner, StructuredPruner

#: The attributes that define a layer's shape, as Torch-Pruning changes them.
SHAPE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
               "num_channels", "num_groups", "normalized_shape", "num_parameters", "num_embeddings",
               "embedding_dim", "hidden_size", "input_size", "embed_dim", "num_heads", "head_dim", "kdim",
               "vdim", "dim")
#: Parameters of a skorch net that a file may set (besides the prefixed ones).
_NET_PARAMS = frozenset({"lr", "max_epochs", "batch_size", "predict_nonlinearity", "warm_start", "verbose",
                         "device", "compile", "use_caching", "torch_load_kwargs", "classes", "precision",
                         "channels_last", "optimizer"})
_NET_PREFIXES = ("iterator_train__", "iterator_valid__", "optimizer__", "criterion__")
#: skorch net parameters not stored: the network (its tensors are), the training callbacks, the validation
#: split, the feature cache (a joblib store of pickles: never read for a file) and the training loss (None).
_NET_NOT_STORED = frozenset({"module", "callbacks", "train_split", "feature_cache", "training_loss",
                             "_params_to_validate"})
#: The values a loaded net takes for the skorch settings skcovid never changes, whatever a file says: a file
#: neither compiles code, nor replaces the output nonlinearity, nor sets the loaders (workers, samplers).
_NET_FIXED = {"predict_nonlinearity": "auto", "compile": False, "use_caching": "auto", "torch_load_kwargs": None}
_NET_LOADER_SETTINGS = ("num_workers", "pin_memory", "persistent_workers", "shuffle")
#: What the net settings a file may set must be: (predicate, what it accepts).
_NET_VALUES = {
    "batch_size": (lambda v: is_count(v, 1, MAX_BATCH_SIZE), f"a whole number from 1 to {MAX_BATCH_SIZE}"),
    "max_epochs": (lambda v: is_count(v, 0), "a whole number"),
    "lr": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0,
           "a finite number > 0"),
    "precision": (lambda v: isinstance(v, str) and v in PRECISIONS, f"one of {sorted(PRECISIONS)}"),
    "device": (lambda v: v is None or (v != "auto" and is_device(v)), f"a device of {list(DEVICE_TYPES)}"),
    "warm_start": (lambda v: isinstance(v, bool), "True or False"),
    "channels_last": (lambda v: isinstance(v, bool), "True or False"),
    "verbose": (lambda v: is_count(v, 0), "a whole number >= 0"),
    "classes": (lambda v: v is None or isinstance(v, (list, np.ndarray)), "None or a list of classes"),
}


def _satisfies(check, value):
    try:
        return bool(check(value))
    except (TypeError, ValueError, RuntimeError):
        return False
#: Classifier parameters of this process or machine, stored as None.
_NOT_STORED = ("accelerator", "memory")
_TAGS = ("__tuple__", "__dict__", "__ndarray__", "__optimizer__", "__tensor__", "__estimator__")
PICKLE_HINT = ("save it with save_model(estimator, path, format='pickle') (a pickle loads only with "
                "trusted=True, since it can run code)")
#: The classes a file's estimator, or each member of its ensemble, may be.
CLASSIFIERS = ("TransferCNNClassifier", "PrunedCNNClassifier")
#: The classes a file may name, and nothing else.
_CLASSES = {cls.__name__: cls for cls in (TransferCNNClassifier, PrunedCNNClassifier, StructuredPruner,
                                          MagnitudePruner)}


def _shown(value):
    """``repr(value)``, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def refuse(where, value, why):
    text = _shown(value)
    raise ValueError(f"Cannot save {where}={text} in the safe model format: {why}. Set it to plain data "
                     f"before saving, or {PICKLE_HINT}.")


# ------------------------------------------------------------------ values
def encode(value, where):
    """``value`` as JSON data, tagged where JSON alone would lose its type."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return encode(os.fspath(value), where)
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, where) for v in value]}
    if isinstance(value, list):
        return [encode(v, where) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__dict__": [[encode(k, where), encode(v, where)] for k, v in value.items()]}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUO" and (value.dtype.kind != "O"
                                                                             or value.ndim == 1):
        items = value.tolist() if value.dtype.kind != "O" else [encode(v, where) for v in value]
        return {"__ndarray__": items, "dtype": value.dtype.str, "shape": list(value.shape)}
    refuse(where, value, f"a {type(value).__name__} is not plain data (str, number, bool, None, list, "
                          "tuple, dict, array)")


def decode(value, tensors):
    """The value :func:`encode` encoded (estimators and tensors included)."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    tag = next((t for t in _TAGS if t in value), None)
    if tag is None:
        if any(k.startswith("__") for k in value):
            raise ValueError(f"unknown tag in {sorted(value)}")
        return {k: decode(v, tensors) for k, v in value.items()}
    body = value[tag]
    if tag == "__tuple__":
        return tuple(decode(v, tensors) for v in body)
    if tag == "__dict__":
        return {decode(k, tensors): decode(v, tensors) for k, v in body}
    if tag == "__optimizer__":
        return OPTIMIZERS[body][0]
    if tag == "__tensor__":
        return tensors[body]
    if tag == "__estimator__":
        return build_estimator(body, tensors)
    dtype = np.dtype(value["dtype"])
    if dtype.kind not in "biufUO":
        raise ValueError(f"unsupported array dtype {dtype}")
    if not isinstance(body, list):
        raise ValueError("an array's items must be a list")
    flat = body if dtype.kind == "O" else np.asarray(body, dtype=object).ravel() if body else []
    check_array_spec(dtype, value.get("shape", [len(body)]) if dtype.kind != "O" else [len(body)], len(flat),
                     "an array")
    if dtype.kind == "O":
        array = np.empty(len(body), dtype=object)
        for i, item in enumerate(body):
            array[i] = decode(item, tensors)
        return array
    return np.asarray(body, dtype=dtype).reshape(value["shape"])


def _optimizer_name(optimizer, where):
    for name, (cls, _) in OPTIMIZERS.items():
        if optimizer is cls:
            return name
    refuse(where, optimizer, f"only the optimizers of skcovid's table ({', '.join(OPTIMIZERS)}) are stored")


def _param(key, value, where, tensors):
    if key == "backbone" and callable(value) and not isinstance(value, str):
        refuse(where, value, "a callable backbone is code, which a safe model file never holds")
    if key == "optimizer" and isinstance(value, type):
        return {"__optimizer__": _optimizer_name(value, where)}
    if key == "callbacks" and value:
        refuse(where, value, "callbacks are code, which a safe model file never holds")
    if key == "random_state" and isinstance(value, np.random.RandomState):
        refuse(where, value, "a RandomState is not stored; use an int seed")
    if isinstance(value, BaseEstimator):
        return {"__estimator__": estimator_spec(value, where + ".", tensors, fitted=False)}
    return encode(value, where)


# -------------------------------------------------------------- estimators
def estimator_spec(estimator, where, tensors, *, fitted):
    """The JSON spec of an estimator: class, params and (when ``fitted``) fitted attributes."""
    name = type(estimator).__name__
    if _CLASSES.get(name) is not type(estimator) or (not where and "Pruner" in name):
        raise TypeError(f"The safe model format stores a TransferCNNClassifier or a PrunedCNNClassifier (with "
                        f"skcovid's pruners), or a soft VotingClassifier of them (a fold ensemble); got a {name} "
                        f"({where or 'the estimator'}). Save the fitted "
                        f"classifier itself (a Pipeline's last step, a search's best_estimator_; "
                        f"load_model(path, runtime='torch') gives it, the default an ONNX Runtime predictor), "
                        f"or {PICKLE_HINT}.")
    params = estimator.get_params(deep=False)
    spec = {"class": name, "params": {
        key: None if key in _NOT_STORED and name == "TransferCNNClassifier"
        else _param(key, value, f"{where}{key}", tensors)
        for key, value in params.items()}}
    if not fitted:
        return spec
    attributes, dropped = {}, []
    for key, value in vars(estimator).items():
        if key.startswith("_") or not key.endswith("_") or key in params:
            continue
        if key == "net_" and name == "TransferCNNClassifier":
            spec["network"] = _network_spec(estimator, value, f"{where}net_", tensors)
        elif isinstance(value, BaseEstimator):
            attributes[key] = {"__estimator__": estimator_spec(value, f"{where}{key}.", tensors, fitted=True)}
        elif name.endswith("Pruner") and isinstance(value, dict) and all(map(torch.is_tensor, value.values())):
            dropped.append(key)  # StructuredPruner's Taylor gradients_: tensors of the unpruned network
        else:
            attributes[key] = encode(value, f"{where}{key}")
    spec["attributes"] = attributes
    if dropped:
        spec["dropped"] = dropped
    return spec


def build_estimator(spec, tensors):
    cls = _CLASSES.get(spec["class"])
    if cls is None:
        raise ValueError(f"unknown estimator class {spec['class']!r}")
    params = {key: decode(value, tensors) for key, value in upgraded_params(cls, spec["params"]).items()}
    unknown = set(params) - set(inspect.signature(cls).parameters)
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameters {sorted(unknown)} in this skcovid version")
    if cls is TransferCNNClassifier:
        params = {**params, **{key: None for key in _NOT_STORED}}  # settings of the machine that trained
        _check_classifier_params(params)
    estimator = cls(**params)
    validate_parameters(estimator)  # the estimator's own _parameter_constraints, as fit would check them
    for key, value in spec.get("attributes", {}).items():
        if not (key.isidentifier() and key.endswith("_") and not key.startswith("_")):
            raise ValueError(f"{key!r} is not a fitted attribute")
        if key == "net_":
            raise ValueError("net_ is an attribute: a network is stored as the 'network' entry, and only there")
        value = decode(value, tensors)
        if key == "estimator_" and not isinstance(value, TransferCNNClassifier):
            raise ValueError(f"estimator_ is a {type(value).__name__}, not a fitted TransferCNNClassifier")
        setattr(estimator, key, value)
    if "network" in spec:
        if not isinstance(spec["network"], dict) or not isinstance(spec["network"].get("module"), dict):
            raise ValueError(f"network is {_shown(spec['network'])}, not an object describing a network")
        estimator.net_ = _rebuild_network(spec["network"], tensors)
    _check_fitted(estimator, spec)
    return estimator


def _check_classifier_params(params):
    """Bounds on the sizes a classifier's parameters declare, before anything is built from them."""
    check_image_size(params.get("image_size"), "image_size")
    widths = params.get("hidden_units", ())
    if not isinstance(widths, (list, tuple)) or not all(is_count(w) for w in widths) or sum(widths) > MAX_HEAD_UNITS:
        raise ValueError(f"hidden_units is {widths!r}: expected whole numbers >= 1, at most {MAX_HEAD_UNITS} in all")
    if not is_count(params.get("batch_size"), 1, MAX_BATCH_SIZE):
        raise ValueError(f"batch_size is {params.get('batch_size')!r}: expected 1 to {MAX_BATCH_SIZE}")


def _check_fitted(estimator, spec):
    """The fitted attributes a prediction reads must be what fit would have set."""
    classes = getattr(estimator, "classes_", None)
    fitted = "network" in spec or "estimator_" in spec.get("attributes", {})
    missing = ["classes_"] if fitted and classes is None else []
    if missing or (isinstance(estimator, PrunedCNNClassifier) and fitted and not hasattr(estimator, "estimator_")):
        raise ValueError(f"the fitted {type(estimator).__name__} lacks {missing or ['estimator_']}")
    if classes is None:
        return
    if isinstance(estimator, TransferCNNClassifier) and "network" in spec:
        arch = spec["network"]["module"]
        # Structured pruning narrows the hidden layers: their widths are the network's own.
        described = {"backbone": estimator.backbone, "image_size": estimator.image_size,
                     "pooling": estimator.pooling}
        wrong = sorted(key for key, value in described.items() if arch.get(key) != value)
        if wrong:
            raise ValueError(f"the parameters {wrong} do not describe the stored network "
                             f"({ {key: arch.get(key) for key in wrong} })")
        check_classes(classes, int(arch["n_classes"]), "classes_")
        check_decision(classes, temperature=getattr(estimator, "temperature_", None),
                       threshold=getattr(estimator, "threshold_", None),
                       pos_label=getattr(estimator, "pos_label_", None), where="the fitted ")
    owner = getattr(estimator, "estimator_", None)
    if owner is not None and np.asarray(owner.classes_).tolist() != np.asarray(classes).tolist():
        raise ValueError(f"classes_ {np.asarray(classes).tolist()!r} are not those of estimator_, "
                         f"{np.asarray(owner.classes_).tolist()!r}")


# ----------------------------------------------------------------- network
def _cpu(tensor):
    return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)


def _architecture(classifier, module):
    """What :func:`_skeleton` needs to build ``module``'s network before pruning changed shapes."""
    if type(module) is not TransferNet:
        raise TypeError(f"The safe format stores skcovid's TransferNet, not {type(module).__name__}: {PICKLE_HINT}.")
    linears = [m for m in module.head if isinstance(m, nn.Linear)]
    dropouts = [m.p for m in module.head if isinstance(m, nn.Dropout)]
    return {
        "backbone": classifier.backbone, "image_size": int(classifier.image_size),
        "n_features": linears[0].in_features, "n_classes": linears[-1].out_features,
        "hidden_units": [m.out_features for m in linears[:-1]],
        "dropout": float(dropouts[0]) if dropouts else 0.0,
        "pooling": "max" if isinstance(module.pool, nn.AdaptiveMaxPool2d) else "avg",
        "mean": module.input.mean.flatten().tolist(), "std": module.input.std.flatten().tolist(),
        "frozen_stages": list(module.frozen_stages),
    }


def _skeleton(arch):
    """A fresh TransferNet of ``arch``, randomly initialised (the global RNG is left alone)."""
    if not is_backbone_name(arch["backbone"]):
        raise ValueError(f"unknown backbone {arch['backbone']!r}")
    with torch.random.fork_rng(devices=[]):
        backbone = build_backbone(arch["backbone"], None, int(arch["image_size"]))
        return TransferNet(backbone.features, int(arch["n_features"]), int(arch["n_classes"]),
                           tuple(arch["mean"]), tuple(arch["std"]), pooling=arch["pooling"],
                           hidden_units=tuple(int(w) for w in arch["hidden_units"]),
                           dropout=float(arch["dropout"]), frozen_stages=list(arch["frozen_stages"]))


def _is_shape(value):
    values = value if isinstance(value, tuple) else (value,)
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _layer_changes(reference, module, where):
    """The shape attributes of ``module``'s layers that differ from ``reference``'s (structural pruning)."""
    references = dict(reference.named_modules())
    changes = {}
    for name, layer in module.named_modules():
        ref = references.pop(name, None)
        if type(ref) is not type(layer):
            raise ValueError(f"Cannot save {where} in the safe model format: its layer {name!r} "
                             f"({type(layer).__name__}) is not the one its backbone builds; {PICKLE_HINT}.")
        changed = {attr: list(value) if isinstance(value, tuple) else value
                   for attr in SHAPE_ATTRS
                   if _is_shape(value := getattr(layer, attr, None)) and value != getattr(ref, attr, None)}
        if changed:
            changes[name] = changed
    if references:
        raise ValueError(f"Cannot save {where} in the safe model format: layers {sorted(references)[:5]} "
                         f"of its backbone are missing; {PICKLE_HINT}.")
    return changes


def _restore_module(module, arch, dense, packed):
    """Give ``module`` (a :func:`_skeleton`) the stored shapes and tensors, in place."""
    for name, attrs in arch["layers"].items():
        layer = module.get_submodule(name)
        for attr, value in attrs.items():
            value = tuple(value) if isinstance(value, list) else value
            if attr not in SHAPE_ATTRS or not _is_shape(value):
                raise ValueError(f"invalid shape attribute {attr}={value!r} of layer {name!r}")
            setattr(layer, attr, value)
    shapes = {name: tuple(t.shape) for name, t in dense.items()}
    shapes.update({name: tuple(int(n) for n in p["shape"]) for name, p in packed.items()})
    state = module.state_dict(keep_vars=True)
    if set(state) != set(shapes):
        raise ValueError(f"the stored tensors do not fit the network: missing {sorted(set(state) - set(shapes))[:5]}, "
                         f"unexpected {sorted(set(shapes) - set(state))[:5]}")
    for name, tensor in dense.items():
        if tensor.is_floating_point() != state[name].is_floating_point():
            raise ValueError(f"the stored tensor {name!r} is {tensor.dtype}, the network's is {state[name].dtype}")
    for name, shape in shapes.items():
        current = state[name]
        if tuple(current.shape) != shape:  # a layer that structural pruning narrowed
            owner, _, leaf = name.rpartition(".")
            if owner not in arch["layers"]:
                raise ValueError(f"the stored tensor {name!r} has shape {shape}, not {tuple(current.shape)}, but the "
                                 f"file declares no pruning of layer {owner!r}")
            empty = torch.empty(shape, dtype=current.dtype)
            if isinstance(current, nn.Parameter):
                empty = nn.Parameter(empty, requires_grad=current.requires_grad)
            setattr(module.get_submodule(owner), leaf, empty)
    result = module.load_state_dict(dense, strict=False)
    if set(result.missing_keys) != set(packed) or result.unexpected_keys:
        raise ValueError(f"the stored tensors do not fit the network: {result}")
    unpack_module(module, packed)
    frozen = set(arch["frozen_parameters"])
    for name, param in module.named_parameters():
        param.requires_grad_(name not in frozen)
    module.eval()  # a loaded network predicts; inference never changes its training flag
    return module


def _check_outputs(original, rebuilt, classifier, where):
    """Refuse to write a file whose network would not give the fitted network's outputs."""
    device, size = next(original.parameters()).device, classifier.image_size
    x = torch.rand(2, n_channels(classifier.window), size, size, generator=torch.Generator().manual_seed(0))
    with eval_mode(original), eval_mode(rebuilt), torch.no_grad():
        expected = original(x.to(device)).float().cpu()
        got = rebuilt(x).float()
    # The same computation on the CPU; other devices (TF32 convolutions) round differently.
    rtol, atol = (1e-4, 1e-5) if device.type == "cpu" else (2e-2, 2e-3)
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=rtol, atol=atol):
        raise ValueError(f"Cannot save {where} in the safe model format: the network rebuilt from the file "
                         f"would not compute what the fitted one does; {PICKLE_HINT}.")


def _network_spec(classifier, net, where, tensors):
    """The JSON spec of a fitted net, checked to rebuild it; its tensors go into ``tensors``."""
    if type(net) is not SkorchNet:
        raise TypeError(f"Cannot save {where} ({type(net).__name__}) in the safe model format; {PICKLE_HINT}.")
    module = net.module_
    arch = _architecture(classifier, module)
    skeleton, packed = pack_module(module)
    dense = {name: _cpu(t) for name, t in skeleton.state_dict().items() if name not in packed}
    packed = {name: {"shape": list(p["shape"]), "bits": p["bits"].clone(), "values": _cpu(p["values"])}
              for name, p in packed.items()}
    rebuilt = _skeleton(arch)
    arch["layers"] = _layer_changes(rebuilt, module, where)
    arch["sparse"] = {name: p["shape"] for name, p in packed.items()}
    arch["frozen_parameters"] = [name for name, p in module.named_parameters() if not p.requires_grad]
    arch["training"] = module.training
    _check_outputs(module, _restore_module(rebuilt, arch, dense, packed), classifier, where)

    prefix = where + "."
    tensors.update({f"{prefix}module.{name}": t for name, t in dense.items()})
    for name, p in packed.items():
        tensors[f"{prefix}sparse.{name}.bits"], tensors[f"{prefix}sparse.{name}.values"] = p["bits"], p["values"]
    return {"prefix": prefix, "module": arch, "net": _net_spec(net, prefix, tensors, where)}


def _net_spec(net, prefix, tensors, where):
    params = {}
    for key, value in net.get_params(deep=False).items():
        if key in _NET_NOT_STORED or key.startswith("callbacks__"):
            continue
        if key == "criterion":
            if value is not nn.CrossEntropyLoss:
                refuse(f"{where}.criterion", value, "only CrossEntropyLoss is stored")
        elif key in ("dataset", "iterator_train", "iterator_valid"):
            if value is not (Dataset if key == "dataset" else DataLoader):
                refuse(f"{where}.{key}", value, "only skorch's defaults are stored")
        elif key not in _NET_PARAMS and not key.startswith(_NET_PREFIXES):
            refuse(f"{where}.{key}", value, "it is not a parameter skcovid's nets use")
        elif isinstance(value, torch.Tensor):  # criterion__weight: the class weights
            tensors[f"{prefix}net.{key}"] = _cpu(value)
            params[key] = {"__tensor__": f"{prefix}net.{key}"}
        elif key == "optimizer":
            params[key] = {"__optimizer__": _optimizer_name(value, f"{where}.optimizer")}
        else:
            params[key] = encode(value, f"{where}.{key}")

    def plain(value):
        if isinstance(value, (np.generic, np.ndarray)):
            return jsonable(value)
        raise TypeError(f"{type(value).__name__} is not JSON data")

    try:
        history = json.loads(json.dumps(net.history.to_list(), default=plain))
    except TypeError as exc:
        raise ValueError(f"Cannot save the history of {where} in the safe model format ({exc}); "
                         f"{PICKLE_HINT}.") from exc
    return {"params": params, "history": history}


def _rebuild_network(spec, tensors):
    """The fitted skorch net a :func:`_network_spec` describes, ready to predict."""
    prefix, arch = spec["prefix"], spec["module"]
    module_prefix, sparse_prefix = prefix + "module.", prefix + "sparse."
    dense = {k[len(module_prefix):]: t for k, t in tensors.items() if k.startswith(module_prefix)}
    packed = {name: {"shape": shape, "bits": tensors[f"{sparse_prefix}{name}.bits"],
                     "values": tensors[f"{sparse_prefix}{name}.values"]}
              for name, shape in arch["sparse"].items()}
    check_architecture(arch, dense, packed)
    module = _restore_module(_skeleton(arch), arch, dense, packed)
    params = {}
    for key, value in spec["net"]["params"].items():
        if key not in _NET_PARAMS and not key.startswith(_NET_PREFIXES):
            raise ValueError(f"unknown net parameter {key!r}")
        if key.startswith(("iterator_train__", "iterator_valid__")):
            if key.split("__", 1)[1] not in _NET_LOADER_SETTINGS:
                raise ValueError(f"net parameter {key!r} is not one skcovid sets")
            continue  # loaders of the machine that trained: a loaded net predicts without workers
        params[key] = decode(value, tensors)
    for key, fixed in _NET_FIXED.items():
        if key in params and params[key] != fixed:
            raise ValueError(f"net parameter {key}={params[key]!r}: skcovid's nets use {fixed!r}")
    for key, (check, expected) in _NET_VALUES.items():
        if key in params and not _satisfies(check, params[key]):
            raise ValueError(f"net parameter {key}={params[key]!r}: expected {expected}")
    device = params.get("device")
    if device is not None and get_map_location(device).type != torch.device(device).type:
        params["device"] = "cpu"  # as skorch loads a CUDA net's pickle without CUDA (with a DeviceWarning)
    net = SkorchNet(**params, module=module, criterion=nn.CrossEntropyLoss, callbacks=[], train_split=None,
                    feature_cache=None).initialize()
    if net.channels_last and torch.device(net.device).type == "cuda":
        net.module_.to(memory_format=torch.channels_last)
    net.history = History(spec["net"]["history"])
    return net
