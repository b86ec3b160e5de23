"""Peak memory while fitting on 500 vs 2481 image paths: images are never all held in memory.

Each fit runs in a fresh process (``resource.getrusage`` gives its peak RSS):
fine-tuning EfficientNet-Lite0 end to end for one epoch, and training a head on
the frozen backbone (features computed once, then one epoch of the head). Both
use batch size 32, no validation split and ``random_state=0``; fine-tuning keeps
the default 64 MB of decoded images. The 500 slices are a stratified sample
(seed 0) of all 2481 files (duplicates kept). Goal: peak RSS grows by under
100 MB from 500 to 2481 slices.

Usage::

    python benchmarks/bench_memory.py [--image-size 128]
"""

import argparse
import json
import subprocess
import sys

from _slices import machine

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {here!r})
from _slices import classifier, real_slices
X, y = real_slices({n}, drop_duplicates=False)
clf = classifier(freeze={freeze!r}, image_size={size}, max_epochs=1, batch_size=32,
                            early_stopping=None, validation_fraction=None, random_state=0)
start = time.perf_counter()
clf.fit(X, y)
print(json.dumps({{"n": len(X), "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    print(machine())
    print(f"{args.image_size} px, batch 32, 1 epoch, no validation split, random_state=0; "
          "500 slices: stratified sample (seed 0) of all 2481 files")
    for freeze, label in (("none", "fine-tuning, 1 epoch"), ("backbone", "frozen backbone, head only")):
        peaks = {}
        for n in (500, None):
            code = _CHILD.format(here=here, n=n, freeze=freeze, size=args.image_size)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
            result = json.loads(out)
            peaks[result["n"]] = result["peak_rss_mb"]
            print(f"  {label:>28}, {result['n']:>4} slices: peak RSS {result['peak_rss_mb']:7.1f} MB "
                  f"({result['seconds']:.0f} s)")
        (small, large) = sorted(peaks)
        print(f"  {label:>28}: {peaks[large] - peaks[small]:+.1f} MB from {small} to {large} slices "
              "(goal < 100 MB)")


if __name__ == "__main__":
    main()
