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


def scores(path, images, y, classes, threshold=None, pos_label=None):
    """Accuracy and ROC-AUC of the ONNX file ``path`` on ``images`` (model input units) and labels ``y``.

    Predictions are the classifier's decision (:func:`skcovid._decision.decide.decide`);
    the ROC-AUC is one-vs-rest for more than two classes.
    """
    import onnxruntime  # heavy: loaded by INT8 exports only

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    proba = np.concatenate([session.run(None, {"image": image[None, None]})[0] for image in images])
    classes = np.asarray(classes, dtype=object)
    labels = np.asarray(y, dtype=object)
    predicted = decide(proba, classes, threshold, pos_label)
    if len(classes) == 2:
        auc = roc_auc_score(labels == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(labels, proba, labels=list(classes), multi_class="ovr")
    return {"accuracy": float(np.mean(predicted == labels)), "roc_auc": float(auc)}


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
        Slices and their labels, scored with both models.
    tolerance : float or None
        The accuracy and ROC-AUC the quantised model may lose against the
        float one on ``validation``; None quantises every node.
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
    info = {"dtype": "int8", "method": METHOD, "n_calibration_images": len(calibration),
            "equalization": bool(equalize), "n_equalized_pairs": n_pairs, "tolerance": tolerance,
            "n_quantizable_nodes": len(candidates), "excluded_nodes": [], "float_nodes": [], "validation": None}
    if validation is None:
        return full, info
    images, y = validation

    def measure(path):
        return scores(path, images, y, decision["classes"], decision["threshold"], decision["pos_label"])

    reference = measure(prepared)
    measured = {0: (full, measure(full))}
    ranked = []

    def held(k):
        if k not in measured:
            if k >= len(ranked):
                measured[k] = (prepared, reference)  # every node float: the float model itself
            else:
                path = _quantize_static(source, os.path.join(folder, f"int8-{k}.onnx"), calibration,
                                        fixed + ranked[:k])
                measured[k] = (path, measure(path))
        lost = max(reference[key] - measured[k][1][key] for key in reference)
        return lost <= tolerance + 1e-9

    k = 0
    if tolerance is not None and not held(0):
        sensitivity = sensitivities(source, full, model.graph, calibration, candidates, folder)
        ranked[:] = sorted(candidates, key=lambda name: -sensitivity[name])  # stable: graph order on ties
        # The fewest most sensitive nodes to return to float: doubling, then bisection
        # (which takes the loss to shrink as nodes return to float).
        bad, k = 0, 1
        while not held(k):
            bad, k = k, min(2 * k, len(ranked))
        while k - bad > 1:
            middle = (bad + k) // 2
            bad, k = (bad, middle) if held(middle) else (middle, k)
    path, chosen = measured[k]
    # What stayed float, read from the file: a node between float nodes may lose its QDQ too.
    quantized = set() if path == prepared else set(_quantized_nodes(path, model.graph, fixed))
    info.update(excluded_nodes=ranked[:k], float_nodes=[name for name in (ranked or candidates)
                                                        if name not in quantized], validation={
        "n_images": len(images), "float32": reference, "quantized": chosen, "all_int8": measured[0][1],
        "n_models_measured": len(measured)})
    if not quantized:
        info["dtype"] = "float32"  # no model with a quantised node kept the tolerance
    return path, info
