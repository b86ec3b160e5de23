"""Decoding speed: JPEG-Lossless DICOM slices to Hounsfield units, against 8-bit PNG slices.

The 60 real slices of the COVID-CT-MD sample (512 x 512, JPEG Lossless,
unsigned 16-bit) are read with ``skcovid._imaging.medical.read_hu`` (pydicom with
pylibjpeg-libjpeg, rescale, display orientation). The same slices, windowed
for the lung (level -600 HU, width 1500 HU) and written as 8-bit 512 x 512
PNGs in a temporary folder, are read with ``skcovid._imaging.raster.read_gray``.
Figures are slices per second, best of 3 passes over the 60 files.

Usage::

    python benchmarks/bench_decode.py [--data-dir ../shared/data/covid-ct-md-sample] [--passes 3]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from _slices import machine
from PIL import Image

from skcovid._imaging.medical import read_hu
from skcovid._imaging.raster import read_gray
from skcovid.datasets import load_dicom_folder

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-ct-md-sample"


def best_rate(read, paths, passes):
    """Slices per second of the fastest of ``passes`` passes over ``paths``."""
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        for path in paths:
            read(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    root = Path(args.data_dir or os.environ.get("SKCOVID_COVID_CT_MD_DIR", DEFAULT))
    if not root.is_dir():
        sys.exit(f"COVID-CT-MD sample not found at {root}; pass --data-dir or set SKCOVID_COVID_CT_MD_DIR.")
    X, _, _ = load_dicom_folder(root)
    print(machine())
    print(" ".join(["python benchmarks/bench_decode.py", *sys.argv[1:]]))
    with tempfile.TemporaryDirectory() as folder:
        pngs = []
        for i, item in enumerate(X):
            lung = np.clip((read_hu(item) - (-600 - 1500 / 2)) / 1500, 0.0, 1.0)
            pngs.append(os.path.join(folder, f"{i:02d}.png"))
            Image.fromarray(np.round(lung * 255).astype(np.uint8)).save(pngs[-1])
        dicom_rate = best_rate(read_hu, list(X), args.passes)
        png_rate = best_rate(read_gray, pngs, args.passes)
    print(f"{len(X)} slices of 512 x 512, best of {args.passes} passes")
    print(f"  DICOM JPEG Lossless -> HU (read_hu):  {dicom_rate:7.1f} slices/s")
    print(f"  PNG 8-bit -> [0, 1] (read_gray):      {png_rate:7.1f} slices/s")
    print(f"  PNG / DICOM: {png_rate / dicom_rate:.1f}x")
    print("pydicom's decoding plugins for these files, pixel_array alone (the same pixels from each):")
    reference = None
    for plugin in decoding_plugins(X[0]):
        def decode(path, plugin=plugin):
            ds = pydicom.dcmread(path)
            ds.pixel_array_options(decoding_plugin=plugin)
            return ds.pixel_array
        pixels = [decode(path) for path in X]
        reference = pixels if reference is None else reference
        same = all(np.array_equal(a, b) for a, b in zip(pixels, reference))
        print(f"  {plugin:>10}: {best_rate(decode, list(X), args.passes):7.1f} slices/s"
              f"{'' if same else '  (pixels differ from the first plugin!)'}")


def decoding_plugins(path):
    """The decoding plugins pydicom can use for ``path``'s transfer syntax, in the order it tries them."""
    from pydicom.pixels.decoders.base import get_decoder

    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    return list(get_decoder(syntax).available_plugins)


if __name__ == "__main__":
    main()
