"""Training that cannot ship an untrained network, small validation splits, crop="body", and load_covid_ct."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skorch.history import History

from skcovid import TransferCNNClassifier
from skcovid._decision.fit import MIN_TRUSTED_PER_CLASS, MIN_TRUSTED_SPLIT, too_small
from skcovid._engine.net import PhasedEarlyStopping
from skcovid._imaging.crop import body_box, crop_image
from skcovid._imaging.window import read_windowed
from skcovid.datasets import load_covid_ct

from conftest import FAST, make_images, write_dicom, write_png


class _Net:
    """What EarlyStopping reads of a net: its history, module and verbosity."""

    def __init__(self):
        self.history = History()
        self.module_ = torch.nn.Linear(1, 1, bias=False)
        self.verbose = 0


def _run_early_stopping(callback, losses):
    net = _Net()
    callback.on_train_begin(net)
    stopped_at = None
    for epoch, loss in enumerate(losses, start=1):
        net.history.new_epoch()
        net.history.record("epoch", epoch)
        net.history.record("valid_loss", loss)
        with torch.no_grad():
            net.module_.weight.fill_(epoch)  # the weights say which epoch they are from
        try:
            callback.on_epoch_end(net)
        except KeyboardInterrupt:
            stopped_at = epoch
            break
    callback.on_train_end(net)
    return int(net.module_.weight.item()), stopped_at


def test_early_stopping_never_restores_weights_of_the_head_only_epochs():
    # The validation minimum falls at epoch 2, the end of the head-only phase: the whole network's
    # first epochs raise the loss before they lower it.
    losses = [0.60, 0.50, 0.90, 0.70, 0.65, 0.80, 0.85, 0.95]
    plain = _run_early_stopping(PhasedEarlyStopping(patience=3, load_best=True, sink=print), losses)
    phased = _run_early_stopping(PhasedEarlyStopping(patience=3, load_best=True, sink=print, start_epoch=2), losses)
    assert plain == (2, 5)  # skorch's rule: back to the head-only weights
    assert phased == (5, 8)  # the best whole-network epoch, and patience counted from the phase's start


def test_a_fit_with_head_epochs_keeps_whole_network_weights(images):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 3, "early_stopping": 1, "validation_fraction": 0.5},
                                head_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the split is small, on purpose
        clf.fit(X, y)
    stopping = dict(clf.net_.callbacks_)["early_stopping"]
    assert stopping.start_epoch == 2
    assert stopping.best_epoch_ > 2


def test_too_small_says_why():
    assert too_small([MIN_TRUSTED_SPLIT // 2 + 1, MIN_TRUSTED_SPLIT // 2]) is None
    assert "too few" in too_small([MIN_TRUSTED_SPLIT, MIN_TRUSTED_PER_CLASS - 1])
    assert "99 validation samples" in too_small([50, 49])


def test_a_small_split_trains_the_whole_schedule_silently_when_left_to_auto(images):
    X, y = images  # 24 slices: a validation split of 6
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 3, "early_stopping": "auto",
                                   "validation_fraction": 0.25, "calibration": "auto"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # settings left to "auto" adapt without a word
        clf.fit(X, y)
    assert len(clf.history_) == 3 and "early_stopping" not in dict(clf.net_.callbacks_)
    assert clf.temperature_ == 1.0 and clf.temperature_fitted_ is False


def test_a_small_split_warns_of_what_was_asked_for_explicitly(images):
    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 3, "validation_fraction": 0.25,
                                   "early_stopping": 2, "calibration": "temperature"})
    with pytest.warns(UserWarning, match=r"too small for early stopping.*6 validation samples.*early stopping "
                                         r"\(patience 2\) watches it as asked.*temperature is fitted on it") as said:
        clf.fit(X, y)
    assert "auto" not in str(said[0].message) and clf.temperature_fitted_ is True


def test_the_default_without_a_split_fits_no_temperature_and_says_nothing(images):
    X, y = images
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "calibration": "auto"}).fit(X, y)
    assert clf.temperature_ == 1.0 and clf.temperature_fitted_ is False


def test_calibration_auto_fits_the_temperature_on_a_split_large_enough():
    X, y = make_images(n_per_class=160)
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "validation_fraction": 0.4,
                                   "batch_size": 64, "calibration": "auto"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # 64 a class: no warning of a small split
        warnings.filterwarnings("ignore", "The temperature fitted", UserWarning)
        clf.fit(X, y)
    assert clf.temperature_ != 1.0


def _figure(height=120, width=160):
    """A raster slice as a paper's figure holds it: white margins, a frame line, a caption, the body in the middle."""
    image = np.ones((height, width), dtype=np.float32)
    image[10:110, 20:140] = 0.0  # the scan's black field of view
    rows, cols = np.ogrid[:height, :width]
    image[((rows - 60) / 35) ** 2 + ((cols - 80) / 45) ** 2 <= 1] = 0.7  # the body
    image[((rows - 60) / 20) ** 2 + ((cols - 65) / 10) ** 2 <= 1] = 0.1  # a lung
    image[113:117, 20:100] = 0.0  # a caption under the figure
    return image


def test_crop_body_cuts_a_figure_down_to_the_body():
    rows, cols = body_box(_figure(), hu=False)
    assert 22 <= rows.start <= 25 and 95 <= rows.stop <= 98
    assert 32 <= cols.start <= 35 and 125 <= cols.stop <= 128
    assert crop_image(_figure(), None, hu=False).shape == (120, 160)


def test_crop_body_on_hounsfield_units(tmp_path):
    hu = np.full((64, 64), -1000, dtype=np.int16)
    rows, cols = np.ogrid[:64, :64]
    hu[((rows - 30) / 20) ** 2 + ((cols - 32) / 24) ** 2 <= 1] = 40  # soft tissue
    hu[((rows - 30) / 10) ** 2 + ((cols - 24) / 6) ** 2 <= 1] = -850  # a lung, inside the body
    hu[58:60, 4:60] = 200  # the table, thin and apart
    path = write_dicom(tmp_path / "slice.dcm", hu)
    whole, cropped = read_windowed(str(path), None), read_windowed(str(path), None, "body")
    assert whole.shape == (1, 64, 64)
    assert cropped.shape[1] < 45 and cropped.shape[2] < 52  # the table and the air are gone
    lung = cropped[0, cropped.shape[1] // 2]
    assert lung.min() < 0.5  # the lung (0.33 in the lung window, tissue 0.93) is in: a hole of the body, filled


def test_crop_body_keeps_a_slice_without_a_body_whole():
    flat = np.zeros((40, 40), dtype=np.float32)
    assert crop_image(flat, "body", hu=False).shape == (40, 40)
    speck = flat.copy()
    speck[5:8, 5:8] = 1.0
    assert crop_image(speck, "body", hu=False).shape == (40, 40)
    # Intensities a few subnormal steps apart (scikit-learn's check data): no histogram of 256 bins, no body.
    nearly = np.zeros((40, 40)) + 5e-324 * (np.arange(40) % 2)
    assert crop_image(nearly, "body", hu=False).shape == (40, 40)


def test_the_crops_fast_opening_and_hole_area_equal_scipys():
    from scipy import ndimage

    from skcovid._imaging.crop import hole_area, square_opening

    rng = np.random.RandomState(0)
    for _ in range(200):
        mask = rng.rand(*rng.randint(3, 40, 2)) < rng.rand()
        radius = rng.randint(1, 4)
        expected = ndimage.binary_opening(mask, structure=np.ones((2 * radius + 1,) * 2, dtype=bool))
        np.testing.assert_array_equal(square_opening(mask, radius), expected)
        assert hole_area(mask) == ndimage.binary_fill_holes(mask).sum() - mask.sum()


def test_crop_is_a_parameter_that_reads_fit_and_predict_images(tmp_path):
    for k in range(4):
        for label, value in (("COVID", 0.9), ("non-COVID", 0.3)):
            image = _figure()
            image[image == 0.7] = value
            Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / f"{label}_{k}.png")
    X = np.array(sorted(str(p) for p in tmp_path.glob("*.png")), dtype=object)
    y = np.array(["COVID" if "/COVID" in x else "non-COVID" for x in X], dtype=object)
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "crop": "body"}).fit(X, y)
    assert clf._images(X).crop == "body"
    proba = clf.predict_proba(X)
    assert not np.allclose(proba, clf.set_params(crop=None).predict_proba(X), atol=1e-4)  # the crop is used
    clf.set_params(crop="body")
    # An exported model crops the same way, in ONNX Runtime's reader.
    from skcovid import export, load_onnx

    onnx_model = load_onnx(export(clf, tmp_path / "m.onnx"))
    assert onnx_model.crop == "body"
    np.testing.assert_allclose(onnx_model.predict_proba(X), proba, atol=1e-4)
    with pytest.raises(ValueError, match="crop"):
        TransferCNNClassifier(crop="liver").fit(X, y)


def _covid_ct_copy(root, lists):
    """The COVID-CT repository layout: ``lists`` maps (class suffix, split) to image names."""
    for (suffix, split), names in lists.items():
        archive = root / "Images" / ("CT_COVID" if suffix == "COVID" else "CT_NonCOVID")
        archive.mkdir(parents=True, exist_ok=True)
        for name in names:
            write_png(archive / name)
        listing = root / "Data-split" / suffix / f"{split}CT_{suffix}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{name}\n" for name in names))
    return root


LISTS = {("COVID", "train"): ["c1.png", "c2.png"], ("COVID", "val"): ["c3.png"], ("COVID", "test"): ["c4.png"],
         ("NonCOVID", "train"): ["1.jpg", "2.png"], ("NonCOVID", "val"): ["3.png"], ("NonCOVID", "test"): ["4.png"]}


def test_load_covid_ct_reads_the_official_split(tmp_path):
    root = _covid_ct_copy(tmp_path, LISTS)
    X, y = load_covid_ct(root, subset="train")
    assert [p.rsplit("/", 1)[1] for p in X] == ["c1.png", "c2.png", "1.jpg", "2.png"]
    assert y.tolist() == ["COVID", "COVID", "non-COVID", "non-COVID"]
    assert len(load_covid_ct(root, "val")[0]) == 2 and len(load_covid_ct(root, "test")[0]) == 2
    trainval, _ = load_covid_ct(root)
    assert sorted(trainval) == sorted([*X, *load_covid_ct(root, "val")[0]])
    write_png(root / "Images" / "CT_COVID" / "stray.png")
    with pytest.warns(UserWarning, match="1 images are in no official split"):
        assert len(load_covid_ct(root, "train")[0]) == 4


def test_load_covid_ct_refuses_what_is_not_a_copy(tmp_path):
    with pytest.raises(ValueError, match="subset='all' is not one of"):
        load_covid_ct(tmp_path, subset="all")
    with pytest.raises(FileNotFoundError, match="is not a COVID-CT copy"):
        load_covid_ct(tmp_path)
    root = _covid_ct_copy(tmp_path / "one", LISTS)
    (root / "Images" / "CT_COVID" / "c3.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images named in the COVID split files are not in .*c3.png"):
        load_covid_ct(root)
    root = _covid_ct_copy(tmp_path / "two", {**LISTS, ("COVID", "test"): ["c1.png"]})
    with pytest.raises(ValueError, match="'c1.png' is listed in both the train and the test split"):
        load_covid_ct(root)
    root = _covid_ct_copy(tmp_path / "three", LISTS)
    (root / "Data-split" / "NonCOVID" / "valCT_NonCOVID.txt").unlink()
    with pytest.raises(FileNotFoundError, match="valCT_NonCOVID.txt of the COVID-CT copy"):
        load_covid_ct(root)


@pytest.mark.parametrize("n_slices", [20, 60, 200])
def test_the_default_recipe_trains_any_folder_and_saves_a_model(n_slices, tmp_path, capsys):
    # As a new user would: the command's defaults, only smaller images and fewer epochs to keep the test short.
    from sklearn.model_selection import train_test_split

    from skcovid._cli.main import main
    from skcovid._deploy.persistence import load_model
    from skcovid.datasets import load_sample_ct

    X, y = load_sample_ct()
    if n_slices < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=n_slices, stratify=y, random_state=0)
    for path, label in zip(X, y):
        (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / label / path.rsplit("/", 1)[1]).symlink_to(path)
    status = main(["train", tmp_path / "data", "--out", tmp_path / "m.skcovid", "--image-size", "64",
                   "--epochs", "2", "-q"])
    out, err = capsys.readouterr()
    assert status == 0, err
    n_test = round(n_slices * 0.2)
    # Too few for a validation split to trust: all of the training part trains, and the summary says so;
    # the user asked for none of it, so no warning.
    assert (f"parts: training {n_slices - n_test}, validation 0, held out {n_test} (the report); "
            "temperature: none fitted (no validation split large enough to trust)") in out
    assert "Warning" not in err and "warning" not in err
    assert load_model(tmp_path / "m.skcovid", runtime="torch").temperature_ == 1.0


def test_a_temperature_left_at_1_by_calibration_auto_is_not_reported_as_fitted(images):
    from skcovid._decision.fit import refit_decision, temperature_of

    X, y = images
    clf = TransferCNNClassifier(**{**FAST, "max_epochs": 1, "calibration": "auto"}).fit(X, y)
    assert clf.temperature_ == 1.0 and temperature_of(clf) is None
    # Out-of-fold probabilities of enough slices (here 200, made up) fit it, as skcovid train --cv does.
    rng = np.random.RandomState(0)
    labels = np.repeat(clf.classes_, 100)
    proba = np.clip(np.where(labels[:, None] == clf.classes_, 0.9, 0.1) + rng.normal(0, 0.05, (200, 2)), 0.01, 1)
    assert refit_decision(clf, proba / proba.sum(axis=1, keepdims=True), labels)
    assert temperature_of(clf) == clf.temperature_ != 1.0
