"""How much a model's answer for one slice depends on how the slice was exported from the scanner's HU.

The COVID-CT-MD sample's DICOM slices (another hospital: 6 patients, 60 slices, COVID-19 against CAP and
normal) are read in Hounsfield units and written again as 8-bit PNG and JPEG files through the display
mappings a PACS, a viewer or a paper uses:

- ``lung-png``: the lung window (level -600, width 1500), PNG: the reference;
- ``lung-jpeg``: the same, JPEG quality 75;
- ``mediastinal``: the mediastinal window (level 50, width 350), which erases the lung parenchyma;
- ``full-range``: min-max over the slice's whole HU range (washed out, grey);
- ``full-range-gamma``: the same with a gamma of 0.5;
- ``screenshot``: the lung window with a white margin of 10% and a caption burnt in, as a figure.

Each candidate (a recipe, ``--candidates``) is trained once, seed 0, on ``--n-train`` SARS-CoV-2 slices
(stratified, seed 0, duplicates dropped) or, with ``--covid-ct PATH``, on COVID-CT's ``train`` and ``val``
lists (never its ``test`` list), and predicts every export through ONNX Runtime (``load_model``'s
default). Per mapping: the median and maximum of |P(COVID) - P(COVID) of the lung-window PNG| over the
60 slices, and the slice ROC-AUC of COVID-19 against the rest.

Usage::

    python benchmarks/bench_invariance.py [--candidates frozen-lite2 frozen] [--n-train 500]
        [--covid-ct PATH] [--dicom-dir ../shared/data/covid-ct-md-sample]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _slices import machine, real_slices
from PIL import Image, ImageDraw
from sklearn.metrics import roc_auc_score

from skcovid import RECIPES, load_model, recipe, save_model
from skcovid._imaging.medical import read_hu
from skcovid.datasets import load_covid_ct, load_dicom_folder
from skcovid.metrics import resolve_pos_label

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def _window(hu, level, width):
    low = level - width / 2
    return np.clip((hu - low) / width, 0, 1)


def _full_range(hu, gamma=1.0):
    low, high = float(hu.min()), float(hu.max())
    return ((hu - low) / max(high - low, 1e-6)) ** gamma


def _screenshot(hu):
    """The lung window inside a white margin of 10% of each side, with a caption burnt in below the slice."""
    gray = (_window(hu, -600, 1500) * 255).astype(np.uint8)
    h, w = gray.shape
    canvas = Image.new("L", (w + w // 5, h + h // 5), 255)
    canvas.paste(Image.fromarray(gray), (w // 10, h // 20))
    ImageDraw.Draw(canvas).text((w // 10, h + h // 20 + 4), "Fig. 2. Axial CT, lung window (arrow: GGO)", fill=0)
    return canvas


#: The display mappings: name -> (HU slice -> PIL image, file suffix, save options).
MAPPINGS = {
    "lung-png": (lambda hu: Image.fromarray((_window(hu, -600, 1500) * 255).astype(np.uint8)), ".png", {}),
    "lung-jpeg": (lambda hu: Image.fromarray((_window(hu, -600, 1500) * 255).astype(np.uint8)), ".jpg",
                  {"quality": 75}),
    "mediastinal": (lambda hu: Image.fromarray((_window(hu, 50, 350) * 255).astype(np.uint8)), ".png", {}),
    "full-range": (lambda hu: Image.fromarray((_full_range(hu) * 255).astype(np.uint8)), ".png", {}),
    "full-range-gamma": (lambda hu: Image.fromarray((_full_range(hu, 0.5) * 255).astype(np.uint8)), ".png", {}),
    "screenshot": (_screenshot, ".png", {}),
}


def write_exports(files, out):
    """Each DICOM file written through every mapping: {mapping: [paths]} in the order of ``files``."""
    exports = {name: [] for name in MAPPINGS}
    for i, path in enumerate(files):
        hu = read_hu(path)
        for name, (to_image, suffix, options) in MAPPINGS.items():
            target = Path(out, name, f"{i:03d}{suffix}")
            target.parent.mkdir(parents=True, exist_ok=True)
            to_image(hu).save(target, **options)
            exports[name].append(str(target))
    return exports


def training_data(args):
    if args.covid_ct:
        X, y = load_covid_ct(args.covid_ct, "trainval")
        return np.asarray(X, dtype=object), np.asarray(y, dtype=object), "COVID-CT train + val"
    X, y = real_slices(args.n_train)
    return X, y, f"{len(X)} SARS-CoV-2 slices"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", nargs="+", default=["frozen-lite2", "frozen"], choices=sorted(RECIPES))
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--covid-ct", default=None, help="a copy of the COVID-CT repository layout")
    parser.add_argument("--dicom-dir", default=os.environ.get("SKCOVID_COVID_CT_MD_DIR", ROOT / "covid-ct-md-sample"))
    args = parser.parse_args()
    files, labels, _ = load_dicom_folder(args.dicom_dir)
    positive = np.asarray(labels) == "COVID-19"
    X, y, source = training_data(args)
    print(f"machine: {machine()}")
    print(f"trained on {source} (seed 0); scored on {len(files)} COVID-CT-MD DICOM slices exported through "
          f"{len(MAPPINGS)} mappings, {int(positive.sum())} of COVID-19")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SKCOVID_CACHE", os.path.join(tmp, "cache"))
        exports = write_exports(files, Path(tmp, "exports"))
        for name in args.candidates:
            start = time.perf_counter()
            clf = recipe(name, random_state=0).fit(X, y)
            fit_minutes = (time.perf_counter() - start) / 60
            model = load_model(save_model(clf, Path(tmp, f"{name}.skcovid")))
            column = list(model.classes_).index(resolve_pos_label(model.classes_, model.classes_))
            proba = {mapping: model.predict_proba(paths)[:, column] for mapping, paths in exports.items()}
            print(f"\n{name} ({type(model).__name__}; fit {fit_minutes:.1f} min)")
            print("| export | median abs(p - p lung PNG) | max abs(p - p lung PNG) | ROC-AUC | mean p |")
            print("|---|---|---|---|---|")
            for mapping, p in proba.items():
                delta = np.abs(p - proba["lung-png"])
                print(f"| {mapping} | {np.median(delta):.3f} | {delta.max():.3f} | "
                      f"{roc_auc_score(positive, p):.3f} | {p.mean():.3f} |")


if __name__ == "__main__":
    main()
