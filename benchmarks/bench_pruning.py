"""What pruning buys: FLOPs, parameters, size on disk and CPU latency.

For efficientnet_lite0 (its bundled ImageNet weights), resnet18 and resnet34
(random weights: the cost of a network does not depend on its values), before
and after structured pruning at three ratios (channel counts rounded to
multiples of 8, which the CPU kernels run faster), and magnitude pruning at
three sparsities. Latencies are medians over repeated runs, measured in the same
process one right after the other, and reported as speed-up ratios.

Usage::

    python benchmarks/bench_pruning.py [--image-size 224] [--repeats 30] [--threads N]

Prints a Markdown table (the one in docs/pruning.md).
"""

import argparse
import platform
import statistics
import time

import torch
from _slices import classifier

from skcovid.pruning import (
    MagnitudePruner,
    StructuredPruner,
    count_flops,
    count_nonzero_params,
    count_params,
    serialized_size,
)

MODELS = {"efficientnet_lite0": "DEFAULT", "resnet18": None, "resnet34": None}
RATIOS = (0.25, 0.32, 0.5)
#: FLOPs targets (``StructuredPruner(target_flops=...)``): 0.4 is 60% fewer FLOPs.
TARGET_FLOPS = (0.4,)
SPARSITIES = (0.5, 0.7, 0.9)


def latency(module, batch, image_size, repeats):
    """Median seconds per image of a forward pass at this batch size."""
    x = torch.rand(batch, 1, image_size, image_size)
    module.eval()
    times = []
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.image_size
    shape = (1, 1, size, size)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, image {size}x{size}\n")
    print("| model | pruning | GFLOPs | params (M) | size (MB) | FLOPs removed | params removed "
          "| ms/image b1 | ms/image b16 | speed-up b1 | speed-up b16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, weights in MODELS.items():
        clf = classifier(backbone=name, weights=weights, freeze="none", image_size=size)
        dense = clf._build_module(n_classes=2).eval()
        flops0, params0 = count_flops(dense, shape), count_params(dense)
        size0 = serialized_size(dense, sparse=False)
        dense_ms = [1e3 * latency(dense, batch, size, args.repeats) for batch in (1, 16)]
        print(f"| {name} | none | {flops0 / 1e9:.3f} | {params0 / 1e6:.2f} | {size0 / 2**20:.2f} "
              f"| - | - | {dense_ms[0]:.1f} | {dense_ms[1]:.1f} | 1.00 | 1.00 |")
        x = torch.rand(8, 1, size, size)
        pruners = [(f"structured {ratio}", StructuredPruner(ratio=ratio, round_to=8)) for ratio in RATIOS]
        pruners += [(f"structured, {target:.0%} of FLOPs kept", StructuredPruner(target_flops=target, round_to=8))
                    for target in TARGET_FLOPS]
        for label, pruner in pruners:
            pruner.fit(dense, x)
            pruned = pruner.transform(dense).eval()
            flops, params = count_flops(pruned, shape), count_params(pruned)
            pruned_ms, speedups = [], []
            for batch in (1, 16):
                # Dense and pruned timed back to back, so the ratio sees the same machine state.
                t_dense = latency(dense, batch, size, args.repeats)
                t_pruned = latency(pruned, batch, size, args.repeats)
                pruned_ms.append(1e3 * t_pruned)
                speedups.append(t_dense / t_pruned)
            label += "" if pruner.ratio is not None else f" (ratio {pruner.ratio_:.4f})"
            print(f"| {name} | {label} | {flops / 1e9:.3f} | {params / 1e6:.2f} | "
                  f"{serialized_size(pruned, sparse=False) / 2**20:.2f} | {100 * (1 - flops / flops0):.1f}% | "
                  f"{100 * (1 - params / params0):.1f}% | {pruned_ms[0]:.1f} | {pruned_ms[1]:.1f} | "
                  f"{speedups[0]:.2f} | {speedups[1]:.2f} |")
        for sparsity in SPARSITIES:
            pruned = MagnitudePruner(sparsity=sparsity).fit(dense).transform(dense)
            nonzero = count_nonzero_params(pruned)
            size_sparse = serialized_size(pruned, sparse=True)
            print(f"| {name} | magnitude {sparsity} | {flops0 / 1e9:.3f} | {nonzero / 1e6:.2f} non-zero | "
                  f"{size_sparse / 2**20:.2f} ({100 * size_sparse / size0:.1f}%) | 0% | "
                  f"{100 * (1 - nonzero / params0):.1f}% | - | - | - | - |")


if __name__ == "__main__":
    main()
