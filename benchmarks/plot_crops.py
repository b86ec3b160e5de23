"""A grid of what the network sees of slices from three sources, under each crop and intensity setting.

Rows: three slices of each source (the SARS-CoV-2 screenshots, COVID-CT's ``train`` list, the COVID-CT-MD
DICOM sample), picked evenly along each source's sorted files. Columns: the slice as read, ``crop="body"``,
``crop="lungs"``, and ``crop="lungs"`` with ``intensity="auto"``, each resized to the square the network
takes. The COVID-CT-MD row is also written through the whole HU range (a washed-out export), which
``intensity="auto"`` maps back. Thumbnails of public data sets: SARS-CoV-2 CT-scan (Soares et al. 2020,
CC BY-NC-SA 4.0), COVID-CT (Yang et al. 2020), COVID-CT-MD (Afshar et al. 2021).

Usage::

    python benchmarks/plot_crops.py --covid-ct PATH --out docs/_static/crops.png
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from skcovid._imaging.medical import read_hu
from skcovid._imaging.window import read_windowed
from skcovid.datasets import load_covid_ct, load_dicom_folder, load_image_folder

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
SETTINGS = [(None, None), ("body", None), ("lungs", None), ("lungs", "auto")]
SIDE = 112


def tile(path, crop, intensity):
    image = torch.from_numpy(np.ascontiguousarray(read_windowed(path, None, crop, intensity)))
    return v2.functional.resize(image, [SIDE, SIDE], antialias=True)[0].numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--covid-ct", required=True)
    parser.add_argument("--sars-dir", default=os.environ.get("SKCOVID_SARSCOV2_DIR", ROOT / "sarscov2-ctscan"))
    parser.add_argument("--dicom-dir", default=os.environ.get("SKCOVID_COVID_CT_MD_DIR", ROOT / "covid-ct-md-sample"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sars, _ = load_image_folder(args.sars_dir, check_images=False)
    covid_ct, _ = load_covid_ct(args.covid_ct, "train")
    dicom, _, _ = load_dicom_folder(args.dicom_dir)
    picks = [sars[len(sars) // 6::len(sars) // 3][:3], sorted(covid_ct)[len(covid_ct) // 6::len(covid_ct) // 3][:3],
             dicom[3::20][:3]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        washed = []
        for i, path in enumerate(picks[2]):
            hu = read_hu(path)
            gray = (hu - hu.min()) / max(float(hu.max() - hu.min()), 1e-6)
            target = Path(tmp, f"{i}.png")
            Image.fromarray((gray * 255).astype(np.uint8)).save(target)
            washed.append(str(target))
        for paths in [*picks, washed]:
            for path in paths:
                rows.append(np.concatenate([tile(path, crop, intensity) for crop, intensity in SETTINGS], axis=1))
    grid = np.concatenate(rows, axis=0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).save(args.out)
    print(f"{len(rows)} slices x {len(SETTINGS)} settings written to {args.out}")


if __name__ == "__main__":
    main()
