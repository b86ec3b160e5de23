"""Cross-layer equalisation of an ONNX graph's convolutions before INT8 quantisation (Nagel et al., 2019).

Per-channel weight ranges that differ by orders of magnitude within one
layer (depthwise convolutions with folded batch normalisation) waste most of
an 8-bit grid. For two convolutions joined by a ReLU, ``relu(x / s) = relu(x)
/ s`` for ``s > 0``: dividing output channel ``i`` of the first by ``s_i`` and
multiplying input channel ``i`` of the second by ``s_i`` leaves the network's
function unchanged, and ``s_i = sqrt(r1_i / r2_i)`` (``r`` the channel's
largest absolute weight) gives both layers the same per-channel ranges.

Pairs joined by ReLU6 (``Clip(0, 6)``) are left alone: a clip at 6 does not
commute with the scaling. The paper replaces ReLU6 by ReLU first; measured on
a fine-tuned EfficientNet-Lite0 (``benchmarks/bench_deploy.py``'s split), that
alone took its float32 validation accuracy from 0.965 to 0.64.
"""

import numpy as np

#: Sweeps over the pairs at most, and the change of scale below which equalisation has converged.
MAX_SWEEPS, CONVERGED = 20, 1e-3


def equalize_graph(graph):
    """Equalise, in place, every pair Conv -> ReLU -> Conv of ``graph`` (an ``onnx.GraphProto``).

    Batch normalisation must already be folded into the convolutions (as
    ONNX Runtime's ``quant_pre_process`` does). The float function is kept
    (to rounding); only the weights change.

    Returns
    -------
    n_pairs : int
        The pairs equalised.
    """
    from onnx import numpy_helper  # heavy: loaded by INT8 exports only

    initializers = {init.name: init for init in graph.initializer}
    values = {name: numpy_helper.to_array(init) for name, init in initializers.items()}
    producer = {out: node for node in graph.node for out in node.output}
    uses = {}
    for node in graph.node:
        for tensor in node.input:
            uses[tensor] = uses.get(tensor, 0) + 1

    def group(node):
        return next((a.i for a in node.attribute if a.name == "group"), 1)

    pairs = []
    for second in graph.node:
        if second.op_type != "Conv" or second.input[1] not in values:
            continue
        act = producer.get(second.input[0])
        if act is None or act.op_type != "Relu" or uses.get(act.output[0]) != 1:
            continue
        first = producer.get(act.input[0])
        if (first is None or first.op_type != "Conv" or uses.get(first.output[0]) != 1
                or first.input[1] not in values or uses.get(first.input[1]) != 1
                or uses.get(second.input[1]) != 1 or (len(first.input) > 2 and uses.get(first.input[2]) != 1)):
            continue
        channels = values[first.input[1]].shape[0]
        if group(second) not in (1, channels):
            continue
        pairs.append((first, second))
    for _ in range(MAX_SWEEPS):
        change = 0.0
        for first, second in pairs:
            w1, w2 = values[first.input[1]], values[second.input[1]]
            depthwise = group(second) > 1
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = np.abs(w2).reshape(w2.shape[0], -1).max(axis=1) if depthwise else (
                np.abs(w2).transpose(1, 0, 2, 3).reshape(w2.shape[1], -1).max(axis=1))
            scale = np.ones_like(r1)
            usable = (r1 > 0) & (r2 > 0)
            scale[usable] = np.sqrt(r1[usable] / r2[usable])
            change = max(change, float(np.abs(np.log(scale)).max()))
            values[first.input[1]] = w1 / scale.reshape(-1, 1, 1, 1)
            if len(first.input) > 2 and first.input[2]:
                values[first.input[2]] = values[first.input[2]] / scale
            values[second.input[1]] = w2 * (scale.reshape(-1, 1, 1, 1) if depthwise else scale.reshape(1, -1, 1, 1))
        if change < CONVERGED:
            break
    for first, second in pairs:
        for name in (*first.input[1:], second.input[1]):
            if name:
                initializers[name].CopyFrom(numpy_helper.from_array(values[name].astype(np.float32), name))
    return len(pairs)
