"""Build skcovid's embedded demo set from the SARS-CoV-2 CT-scan dataset.

Picks 100 slices per class at random (seed 0; the byte-identical duplicates
``Covid (129)`` and ``Covid (135)`` are left out), converts them to grayscale
with skcovid's own conversion, downscales them to at most 128 px and writes
8-bit grayscale PNGs into ``skcovid/datasets/data/sample_ct``.

Usage: python tools/make_sample_ct.py [../shared/data/sarscov2-ctscan]
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from skcovid._imaging.raster import read_gray

N_PER_CLASS = 100
MAX_SIDE = 128
DUPLICATES = {"Covid (129).png", "Covid (135).png"}
HERE = Path(__file__).resolve().parent.parent
OUT = HERE / "skcovid" / "datasets" / "data" / "sample_ct"


def main(source):
    rng = np.random.RandomState(0)
    for cls in ("COVID", "non-COVID"):
        files = sorted(p for p in (source / cls).glob("*.png") if p.name not in DUPLICATES)
        chosen = sorted(rng.choice(len(files), N_PER_CLASS, replace=False))
        out_dir = OUT / cls
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        for i in chosen:
            gray = Image.fromarray(np.round(read_gray(files[i]) * 255).astype(np.uint8), mode="L")
            gray.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            name = files[i].name.replace(" ", "_").replace("(", "").replace(")", "")
            gray.save(out_dir / name, optimize=True)
    total = sum(p.stat().st_size for p in OUT.rglob("*.png"))
    print(f"wrote {2 * N_PER_CLASS} slices, {total / 1e6:.2f} MB, to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent / "shared" / "data" / "sarscov2-ctscan"))
