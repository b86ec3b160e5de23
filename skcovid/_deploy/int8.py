"""INT8 quantisation of an exported ONNX file with ONNX Runtime, and accuracy-aware mixed precision.

Everything here works on ONNX files with ``onnx``, ``onnxruntime`` and numpy
(and scikit-learn's ROC-AUC); :func:`skcovid.export` calls :func:`quantize`.
"""

import os

import numpy as np
from sklearn.metrics import roc_auc_score

from skcovid._decision.decide import decide
from skcovid._deploy.equalize import equalize_graph

#: At most this many calibration slices measure each node's sensitivity (every tensor of the network is kept).
SENSITIVITY_IMAGES = 32
#: Without labelled slices, at most this many calibration slices compare the quantised model with the float one.
AGREEMENT_IMAGES = 128
#: Without labelled slices and a tolerance: the share of decisions INT8 may change, and the mean change of the
#: probabilities it may add (at least 99% of the float model's labels).
AGREEMENT_TOLERANCE = 0.01
METHOD = ("ONNX Runtime static, QDQ, per-channel int8 weights (reduce_range), uint8 activations, "
          "min-max calibration")


class _Reader:
    """ONNX Runtime's calibration data reader over ``(H, W)`` float32 slices, one per batch."""

    def __init__(self, images):
        self._images = iter(images)

    def get_next(self):
        image = next(self._images, None)
        return None if image is None else {"image": image[None, None]}

    def __iter__(self):  # qdq_loss_debug.collect_activations iterates over its reader
        return iter(lambda: self.get_next(), None)


def _probabilities(path, images):
    """The ONNX file's class probabilities on ``images`` (model input units), one slice per run."""
    import onnxruntime  # heavy: loaded by INT8 exports only

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"image": image[None, None]})[0] for image in images])


def scores(path, images, y, classes, threshold=None, pos_label=None):
    """Accuracy and ROC-AUC of the ONNX file ``path`` on ``images`` (model input units) and labels ``y``.

    Predictions are the classifier's decision (:func:`skcovid._decision.decide.decide`);
    the ROC-AUC is one-vs-rest for more than two classes.
    """
    proba = _probabilities(path, images)
    classes = np.asarray(classes, dtype=object)
    labels = np.asarray(y, dtype=object)
    predicted = decide(proba, classes, threshold, pos_label)
    if len(classes) == 2:
        auc = roc_auc_score(labels == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(labels, proba, labels=list(classes), multi_class="ovr")
    return {"accuracy": float(np.mean(predicted == labels)), "roc_auc": float(auc)}


class LabelledCriterion:
    """What a quantised model loses on labelled slices: the largest drop of accuracy and ROC-AUC."""

    key = "validation"

    def __init__(self, validation, decision, prepared):
        self.images, self.y = validation
        self.decision = decision
        self.reference = self.measure(prepared)

    def measure(self, path):
        return scores(path, self.images, self.y, self.decision["classes"], self.decision["threshold"],
                      self.decision["pos_label"])

    def loss(self, figures):
        return max(self.reference[key] - figures[key] for key in self.reference)


class AgreementCriterion:
    """What a quantised model loses without labels: its disagreement with the float model on unlabelled slices.

    The larger of the share of slices whose decision changes and of the
    mean absolute change of the class probabilities.
    """

    key = "agreement"

    def __init__(self, images, decision, prepared):
        self.images = images
        self.decision = decision
        self.float_proba = _probabilities(prepared, images)
        self.float_labels = self._labels(self.float_proba)
        self.reference = {"label_agreement": 1.0, "mean_abs_diff": 0.0}

    def _labels(self, proba):
        return decide(proba, np.asarray(self.decision["classes"], dtype=object), self.decision["threshold"],
                      self.decision["pos_label"])

    def measure(self, path):
        proba = _probabilities(path, self.images)
        return {"label_agreement": float(np.mean(self._labels(proba) == self.float_labels)),
                "mean_abs_diff": float(np.mean(np.abs(proba - self.float_proba)))}

    def loss(self, figures):
        return max(1.0 - figures["label_agreement"], figures["mean_abs_diff"])


def _quantize_static(prepared, out, calibration, exclude):
    from onnxruntime.quantization import (  # heavy: loaded by INT8 exports only
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    quantize_static(prepared, out, _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(exclude))
    return out


def _fixed_float(graph):
    """Nodes that always stay float32: the preprocessing before the first convolution, and the softmax.

    8 bits cannot hold Hounsfield units, nor small probabilities.
    """
    nodes = graph.node
    first_conv = next(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    return [node.name for node in nodes[:first_conv]] + [n.name for n in nodes if n.op_type == "Softmax"]


def _quantized_nodes(qdq_file, float_graph, fixed):
    """The float graph's nodes that run quantised in ``qdq_file``: a DequantizeLinear feeds each of their
    float inputs (ONNX Runtime may leave a node's weights float while it quantises its input)."""
    import onnx  # heavy: loaded by INT8 exports only

    graph = onnx.load(qdq_file).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    other = {init.name for init in graph.initializer if init.data_type != onnx.TensorProto.FLOAT}
    quantized = {node.name for node in graph.node if any(i in dequantized for i in node.input)
                 and all(i in dequantized or i in other for i in node.input if i)}
    return [node.name for node in float_graph.node if node.name in quantized and node.name not in fixed]


def sensitivities(float_file, qdq_file, float_graph, calibration, candidates, folder):
    """Relative noise each candidate node adds to the network's activations when quantised.

    ONNX Runtime's ``qdq_loss_debug`` runs the float and the QDQ model on the
    calibration slices, keeping every tensor; a tensor's noise is its
    quantised value's error power over its float value's power (``10 **
    (-SQNR / 10)``). A node's sensitivity is the noise of its output minus the
    largest noise of its inputs: what quantising that node adds. A tensor that
    was not quantised takes the noise of its producer's inputs (upstream) or
    of its one consumer's output (downstream).

    Returns
    -------
    sensitivity : dict of {node name: float}
    """
    from onnxruntime.quantization.qdq_loss_debug import (  # heavy: loaded by INT8 exports only
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    images = calibration[:SENSITIVITY_IMAGES]
    activations = []
    for name, model in (("float", float_file), ("qdq", qdq_file)):
        augmented = os.path.join(folder, f"{name}-all-tensors.onnx")
        modify_model_output_intermediate_tensors(model, augmented)
        activations.append(collect_activations(augmented, _Reader(images)))
    matching = create_activation_matching(activations[1], activations[0])
    noise = {name: 10.0 ** (-errors["xmodel_err"] / 10) for name, errors in
             compute_activation_error(matching).items() if "xmodel_err" in errors}
    producer = {out: node for node in float_graph.node for out in node.output}
    consumers = {}
    for node in float_graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)

    def upstream(tensor, seen=()):
        if tensor in noise:
            return noise[tensor]
        node = producer.get(tensor)
        if node is None or tensor in seen:
            return 0.0  # the graph's input or a weight
        return max((upstream(i, (*seen, tensor)) for i in node.input if i), default=0.0)

    def downstream(tensor):
        while tensor not in noise and len(consumers.get(tensor, ())) == 1:
            tensor = consumers[tensor][0].output[0]
        return noise.get(tensor)

    nodes = {node.name: node for node in float_graph.node}
    out = {}
    for name in candidates:
        node = nodes[name]
        after = downstream(node.output[0])
        before = max((upstream(i) for i in node.input if i), default=0.0)
        out[name] = 0.0 if after is None else max(after - before, 0.0)
    return out


def quantize(raw, folder, calibration, *, validation=None, tolerance=None, equalize=False, decision=None):
    """Quantise the ONNX file ``raw``; return the written file's path and what the metadata records.

    Parameters
    ----------
    raw : str
        The float32 ONNX file.
    folder : str
        A scratch folder.
    calibration : list of ndarray of shape (H, W)
        Slices in the model's input units.
    validation : (list of ndarray, array-like) or None
        Slices and their labels, scored with both models. Without them, the
        quantised model is measured against the float one on (up to
        :data:`AGREEMENT_IMAGES` of) the calibration slices, no labels needed.
    tolerance : float or None
        With ``validation``: the accuracy and ROC-AUC the quantised model
        may lose against the float one; None quantises every node. Without:
        the share of decisions it may change and the mean probability change
        it may add (:class:`AgreementCriterion`); None is
        :data:`AGREEMENT_TOLERANCE`.
    equalize : bool
        Cross-layer equalisation of the float graph before quantisation.
    decision : dict
        ``classes``, ``threshold`` and ``pos_label`` of the classifier.

    Returns
    -------
    path : str
    quantization : dict
    """
    import onnx  # heavy: loaded by INT8 exports only
    from onnxruntime.quantization.shape_inference import quant_pre_process  # heavy: loaded by INT8 exports only

    prepared = os.path.join(folder, "prepared.onnx")
    quant_pre_process(raw, prepared)  # shape inference and graph optimisation, as ORT recommends
    model = onnx.load(prepared)
    source, n_pairs = prepared, 0
    if equalize:
        n_pairs = equalize_graph(model.graph)
        source = os.path.join(folder, "equalized.onnx")
        onnx.save(model, source)
    fixed = _fixed_float(model.graph)
    full = _quantize_static(source, os.path.join(folder, "int8.onnx"), calibration, fixed)
    candidates = _quantized_nodes(full, model.graph, fixed)
    if validation is None:
        criterion = AgreementCriterion(calibration[:AGREEMENT_IMAGES], decision, prepared)
        tolerance = AGREEMENT_TOLERANCE if tolerance is None else tolerance
    else:
        criterion = LabelledCriterion(validation, decision, prepared)
    info = {"dtype": "int8", "method": METHOD, "n_calibration_images": len(calibration),
            "equalization": bool(equalize), "n_equalized_pairs": n_pairs, "tolerance": tolerance,
            "n_quantizable_nodes": len(candidates), "excluded_nodes": [], "float_nodes": [], "validation": None,
            "agreement": None}
    search = _Search(source, prepared, full, calibration, fixed, criterion, tolerance, folder)
    k, ranked = search.run(lambda: sensitivities(source, full, model.graph, calibration, candidates, folder),
                           candidates)
    path, chosen = search.measured[k]
    # What stayed float, read from the file: a node between float nodes may lose its QDQ too.
    quantized = set() if path == prepared else set(_quantized_nodes(path, model.graph, fixed))
    info.update(excluded_nodes=ranked[:k], float_nodes=[name for name in (ranked or candidates)
                                                        if name not in quantized])
    info[criterion.key] = {"n_images": len(criterion.images), "float32": criterion.reference, "quantized": chosen,
                           "all_int8": search.measured[0][1], "n_models_measured": len(search.measured)}
    if not quantized:
        info["dtype"] = "float32"  # no model with a quantised node kept the tolerance
    return path, info


class _Search:
    """The fewest most sensitive nodes to return to float32 so that the quantised model holds ``tolerance``."""

    def __init__(self, source, prepared, full, calibration, fixed, criterion, tolerance, folder):
        self.source, self.prepared, self.calibration, self.fixed = source, prepared, calibration, fixed
        self.criterion, self.tolerance, self.folder = criterion, tolerance, folder
        self.measured = {0: (full, criterion.measure(full))}
        self.ranked = []

    def held(self, k):
        if k not in self.measured:
            if k >= len(self.ranked):
                self.measured[k] = (self.prepared, self.criterion.reference)  # every node float: the float model
            else:
                path = _quantize_static(self.source, os.path.join(self.folder, f"int8-{k}.onnx"), self.calibration,
                                        self.fixed + self.ranked[:k])
                self.measured[k] = (path, self.criterion.measure(path))
        return self.criterion.loss(self.measured[k][1]) <= self.tolerance + 1e-9

    def run(self, sensitivity_of, candidates):
        """The number of ranked nodes returned to float32 (0: every node int8), and the ranking."""
        if self.tolerance is None or self.held(0):
            return 0, self.ranked
        sensitivity = sensitivity_of()
        self.ranked[:] = sorted(candidates, key=lambda name: -sensitivity[name])  # stable: graph order on ties
        # Doubling, then bisection (which takes the loss to shrink as nodes return to float).
        bad, k = 0, 1
        while not self.held(k):
            bad, k = k, min(2 * k, len(self.ranked))
        while k - bad > 1:
            middle = (bad + k) // 2
            bad, k = (bad, middle) if self.held(middle) else (middle, k)
        return k, self.ranked
