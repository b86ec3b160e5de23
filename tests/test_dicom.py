"""DICOM and NIfTI: Hounsfield units, display orientation, series order, patients, folder layouts."""

import csv
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")

from PIL import Image  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from skcovid._imaging.medical import expand_series, is_medical, patient_key, read_hu, source_file  # noqa: E402
from skcovid.datasets import load_dicom_folder, load_image_folder  # noqa: E402

SAMPLE = Path(os.environ.get("SKCOVID_COVID_CT_MD_DIR",
                             Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-ct-md-sample"))
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"COVID-CT-MD sample not found at {SAMPLE}")
SERIES, STUDY = generate_uid(), generate_uid()


def hu_image(rows=6, columns=5, seed=0):
    """A non-square slice of HU values, air to bone."""
    return np.random.default_rng(seed).integers(-1024, 2000, size=(rows, columns)).astype(np.int16)


def write_ct(path, hu=None, *, signed=False, photometric="MONOCHROME2", iop=(1, 0, 0, 0, 1, 0), z=0.0,
             ipp=True, slice_location=True, instance=1, series=SERIES, patient="PAT-0042", modality="CT",
             frames=None, spacing=(0.7, 0.8)):
    """Write a single-frame CT slice (Explicit VR Little Endian) holding ``hu`` in Hounsfield units."""
    hu = hu_image() if hu is None else hu
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.Modality = CTImageStorage, modality
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, STUDY, series
    if iop is not None:
        ds.ImageOrientationPatient = list(iop)
    if ipp:
        normal = np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = [float(v) for v in np.array([-100.0, -120.0, 0.0]) + z * normal]
    if slice_location:
        ds.SliceLocation = z
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelSpacing = list(spacing)
    if signed:
        stored, ds.RescaleIntercept = hu.astype(np.int16), 0
    else:
        stored, ds.RescaleIntercept = (hu.astype(np.int32) + 1024).astype(np.uint16), -1024
    ds.RescaleSlope = 1
    if frames:
        stored = np.stack([stored] * frames)
    ds.set_pixel_data(stored, photometric, 16)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


# -- reading one slice ---------------------------------------------------------------------------------------

def test_unsigned_signed_and_monochrome1_give_the_same_hu(tmp_path):
    """MONOCHROME1 is a display rule (lowest value white): the rescale gives HU from the stored values as they are."""
    hu = hu_image()
    for name, kwargs in {"u": {}, "s": {"signed": True}, "m1": {"photometric": "MONOCHROME1"}}.items():
        out = read_hu(write_ct(tmp_path / f"{name}.dcm", hu, **kwargs))
        assert out.dtype == np.float32 and out.shape == hu.shape
        np.testing.assert_array_equal(out, hu)


def test_objects_that_are_not_images_are_refused_by_name(tmp_path):
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID, sr.Modality = BasicTextSRStorage, "SR"
    sr.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(ValueError, match=r"report\.dcm.*not an image.*'SR'"):
        read_hu(tmp_path / "report.dcm")
    ct = pydicom.dcmread(write_ct(tmp_path / "ct.dcm"))
    del ct.PixelData
    ct.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(ValueError, match=r"nopixels\.dcm.*no pixel data"):
        read_hu(tmp_path / "nopixels.dcm")
    write_ct(tmp_path / "multi.dcm", frames=3)
    with pytest.raises(ValueError, match=r"multi\.dcm.*multi-frame.*3 frames"):
        read_hu(tmp_path / "multi.dcm")


def test_missing_empty_folder_and_truncated_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.dcm"):
        read_hu(tmp_path / "absent.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.dcm.*empty"):
        read_hu(tmp_path / "empty.dcm")
    (tmp_path / "series.dcm").mkdir()
    with pytest.raises(ValueError, match=r"folder.*series\.dcm"):
        read_hu(tmp_path / "series.dcm")
    data = write_ct(tmp_path / "whole.dcm", hu_image(64, 64)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.dcm"):
        read_hu(tmp_path / "cut.dcm")
    (tmp_path / "text.dcm").write_text("not a DICOM file")
    with pytest.raises(ValueError, match=r"text\.dcm"):
        read_hu(tmp_path / "text.dcm")


def test_compressed_without_a_handler_names_file_syntax_and_extra(tmp_path, monkeypatch):
    ds = pydicom.dcmread(write_ct(tmp_path / "plain.dcm"))
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(read_hu(tmp_path / "rle.dcm"), read_hu(tmp_path / "plain.dcm"))
    # What pydicom 3 does when no plugin's dependencies are installed: a RuntimeError.
    from pydicom.pixels.decoders import RLELosslessDecoder
    monkeypatch.setattr(RLELosslessDecoder, "_available", {})
    with pytest.raises(RuntimeError, match="missing dependencies"):
        pydicom.dcmread(tmp_path / "rle.dcm").pixel_array
    with pytest.raises(ValueError, match=r"rle\.dcm.*RLE Lossless.*skcovid\[dicom\].*pylibjpeg"):
        read_hu(tmp_path / "rle.dcm")


def test_missing_pydicom_says_how_to_install(tmp_path, monkeypatch):
    path = write_ct(tmp_path / "a.dcm")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"pydicom.*pip install \"skcovid\[dicom\]\""):
        read_hu(path)


def test_is_medical_and_source_file(tmp_path):
    path = write_ct(tmp_path / "a.dcm")
    (tmp_path / "noext").write_bytes(path.read_bytes())
    (tmp_path / "notes").write_text("hello")
    assert is_medical(str(path)) and is_medical(tmp_path / "A.DICOM") and is_medical(tmp_path / "noext")
    assert is_medical("v.nii") and is_medical("v.nii.gz") and is_medical("dir/v.nii.gz#12")
    assert not is_medical("a.png") and not is_medical(tmp_path / "notes") and not is_medical(np.zeros(3))
    assert source_file("d/v.nii.gz#12") == ("d/v.nii.gz", 12)
    assert source_file("d/a.dcm") == ("d/a.dcm", None)


def test_patient_key_is_salted_and_never_the_raw_id(tmp_path):
    a = write_ct(tmp_path / "a.dcm", patient="PAT-0042")
    b = write_ct(tmp_path / "b.dcm", patient="PAT-0042", z=1.0)
    c = write_ct(tmp_path / "c.dcm", patient="PAT-0043")
    d = write_ct(tmp_path / "d.dcm", patient="")
    key = patient_key(a)
    assert re.fullmatch(r"[0-9a-f]{16}", key) and key != "PAT-0042" and "PAT" not in key
    assert patient_key(b) == key and patient_key(c) != key
    assert patient_key(d) is not None and patient_key(d) != patient_key(a)  # StudyInstanceUID
    assert patient_key("v.nii.gz#3") is None and patient_key(tmp_path / "v.nii.gz") is None


# -- series ----------------------------------------------------------------------------------------------------

def test_series_are_ordered_by_position_never_by_name(tmp_path):
    positions = [30.0, -10.0, 20.0, 0.0, 10.0]  # file names s0..s4 in another order
    for i, z in enumerate(positions):
        write_ct(tmp_path / f"s{i}.dcm", z=z, slice_location=False, instance=10 - i)
    (tmp_path / "README.txt").write_text("ignored")
    (tmp_path / ".hidden.dcm").write_bytes(b"")
    order = [Path(p).name for p in expand_series(tmp_path)]
    assert order == [f"s{i}.dcm" for i in np.argsort(positions)]


def test_slice_location_then_instance_number_fallbacks(tmp_path):
    (tmp_path / "loc").mkdir()
    for i, z in enumerate([5.0, -5.0, 0.0]):
        write_ct(tmp_path / "loc" / f"s{i}.dcm", z=z, ipp=False, instance=i)
    assert [Path(p).name for p in expand_series(tmp_path / "loc")] == ["s1.dcm", "s2.dcm", "s0.dcm"]
    (tmp_path / "num").mkdir()
    for i, number in enumerate([3, 1, 2]):
        write_ct(tmp_path / "num" / f"s{i}.dcm", ipp=False, slice_location=False, instance=number)
    with pytest.warns(UserWarning, match=re.escape(str(tmp_path / "num")) + ".*Instance Number"):
        order = expand_series(tmp_path / "num")
    assert [Path(p).name for p in order] == ["s1.dcm", "s2.dcm", "s0.dcm"]


def test_inconsistent_series_are_refused(tmp_path):
    other = generate_uid()
    write_ct(tmp_path / "a.dcm")
    write_ct(tmp_path / "b.dcm", series=other, z=1.0)
    with pytest.raises(ValueError, match=r"mixes 2 DICOM series") as error:
        expand_series(tmp_path)
    assert f"{SERIES} (e.g. {str(tmp_path / 'a.dcm')!r})" in str(error.value)
    assert f"{other} (e.g. {str(tmp_path / 'b.dcm')!r})" in str(error.value)
    (tmp_path / "sizes").mkdir()
    write_ct(tmp_path / "sizes" / "a.dcm", hu_image(6, 5))
    write_ct(tmp_path / "sizes" / "b.dcm", hu_image(8, 5), z=1.0)
    with pytest.raises(ValueError, match=r"different sizes") as error:
        expand_series(tmp_path / "sizes")
    assert all(s in str(error.value) for s in ("6x5 (e.g. ", "a.dcm", "8x5 (e.g. ", "b.dcm"))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"none.*no DICOM"):
        expand_series(tmp_path / "none")


# -- NIfTI -----------------------------------------------------------------------------------------------------

def nifti_from_dicom(files, path, dtype=np.float32):
    """Write the series as nibabel's DICOM conversion does: data[i=column, j=row, k], a RAS affine."""
    headers = [pydicom.dcmread(f) for f in files]
    first = headers[0]
    iop = np.array(first.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    ipp = [np.array(ds.ImagePositionPatient, dtype=float) for ds in headers]
    step = (ipp[-1] - ipp[0]) / max(len(ipp) - 1, 1) if len(ipp) > 1 else np.cross(iop[:3], iop[3:])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * column_spacing, iop[3:] * row_spacing, step, ipp[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = np.stack([ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in headers],
                    axis=2).astype(dtype)
    nibabel.save(nibabel.Nifti1Image(data, ras), path)
    return str(path)


@pytest.mark.parametrize("iop", [(1, 0, 0, 0, 1, 0), (-1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1),
                                 (1, 0, 0, 0, 0, -1), (0, -1, 0, 1, 0, 0)],
                         ids=["axial", "axial-flipped", "sagittal", "coronal", "axial-transposed"])
def test_nifti_slices_equal_the_dicom_slices_they_were_made_from(tmp_path, iop):
    for i, z in enumerate([2.0, 0.0, 1.0]):
        write_ct(tmp_path / f"s{i}.dcm", hu_image(seed=i), iop=iop, z=z)
    files = expand_series(tmp_path)
    volume = nifti_from_dicom(files, tmp_path / "vol.nii.gz", np.int16)
    for k, file in enumerate(files):
        np.testing.assert_array_equal(read_hu(f"{volume}#{k}"), read_hu(file))
    if iop[0] == 1:  # slice normal along +z: ascending k is ascending superior position
        assert expand_series(volume) == [f"{volume}#{k}" for k in range(3)]


def test_display_orientation(tmp_path):
    hu = hu_image()
    original = read_hu(write_ct(tmp_path / "a.dcm", hu))
    np.testing.assert_array_equal(original, hu)  # axial, rows posterior, columns left: as stored
    flipped = read_hu(write_ct(tmp_path / "b.dcm", hu[:, ::-1], iop=(-1, 0, 0, 0, 1, 0)))
    np.testing.assert_array_equal(flipped, original)
    transposed = read_hu(write_ct(tmp_path / "c.dcm", np.ascontiguousarray(hu.T), iop=(0, 1, 0, 1, 0, 0)))
    np.testing.assert_array_equal(transposed, original)
    # Coronal: rows inferior, columns to the patient's left; sagittal: rows inferior, columns posterior.
    for iop, expected in [((1, 0, 0, 0, 0, -1), hu), ((-1, 0, 0, 0, 0, 1), hu[::-1, ::-1]),
                          ((0, 1, 0, 0, 0, -1), hu), ((0, -1, 0, 0, 0, -1), hu[:, ::-1]),
                          ((0, 0, 1, 0, 1, 0), hu.T[::-1])]:
        np.testing.assert_array_equal(read_hu(write_ct(tmp_path / "d.dcm", hu, iop=iop)), expected, err_msg=iop)


def test_nifti_shapes_and_references(tmp_path):
    affine = np.diag([-0.7, -0.7, 2.0, 1.0])
    volume = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "vol.nii.gz")
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 5, 3, 2), np.int16), affine), tmp_path / "4d.nii.gz")
    nibabel.save(nibabel.Nifti1Image(volume[:, :, :1], affine), tmp_path / "one.nii")
    nibabel.save(nibabel.Nifti1Image(volume[:, :, 0], affine), tmp_path / "flat.nii.gz")
    vol = str(tmp_path / "vol.nii.gz")
    for name in ("4d.nii.gz", "4d.nii.gz#0"):
        with pytest.raises(ValueError, match=r"4d\.nii\.gz.*4-D"):
            read_hu(tmp_path / name)
    with pytest.raises(ValueError, match=r"4d\.nii\.gz.*4-D"):
        expand_series(tmp_path / "4d.nii.gz")
    for k in (3, -1):
        with pytest.raises(ValueError, match=rf"Slice {k} is out of range.*vol\.nii\.gz.*3 slices"):
            read_hu(f"{vol}#{k}")
    with pytest.raises(ValueError, match=r"vol\.nii\.gz.*3 slices.*#k.*expand_series"):
        read_hu(vol)
    with pytest.raises(ValueError, match="Bad NIfTI slice reference"):
        read_hu(f"{vol}#top")
    with pytest.raises(FileNotFoundError, match="absent"):
        read_hu(tmp_path / "absent.nii.gz#0")
    # RAS axes -x, -y: LPS +x, +y, so rows (j) go posterior and columns (i) left: the transpose.
    np.testing.assert_array_equal(read_hu(f"{vol}#1"), volume[:, :, 1].T)
    for name in ("one.nii", "flat.nii.gz"):
        assert expand_series(tmp_path / name) == [str(tmp_path / name)]
        np.testing.assert_array_equal(read_hu(tmp_path / name), volume[:, :, 0].T)
    assert expand_series(vol) == [f"{vol}#{k}" for k in range(3)]
    nibabel.save(nibabel.Nifti1Image(volume, np.diag([-0.7, -0.7, -2.0, 1.0])), tmp_path / "down.nii.gz")
    down = str(tmp_path / "down.nii.gz")
    assert expand_series(down) == [f"{down}#{k}" for k in (2, 1, 0)]


# -- folders ---------------------------------------------------------------------------------------------------

def test_load_dicom_folder_with_nifti_volumes_and_loose_files(tmp_path):
    affine = np.diag([-0.7, -0.7, 2.0, 1.0])
    (tmp_path / "COVID").mkdir()
    (tmp_path / "normal").mkdir()
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 5, 3), np.int16), affine), tmp_path / "COVID" / "p2.nii.gz")
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 5, 2), np.int16), affine), tmp_path / "COVID" / "p1.nii")
    (tmp_path / "COVID" / "notes.txt").write_text("ignored")
    for i, z in enumerate([1.0, 0.0]):
        write_ct(tmp_path / "normal" / f"x{i}.dcm", z=z, patient="PAT-A")
    write_ct(tmp_path / "normal" / "y.dcm", patient="PAT-B")
    X, y, groups = load_dicom_folder(tmp_path)
    covid = str(tmp_path / "COVID")
    assert list(X[:5]) == [f"{covid}/p1.nii#0", f"{covid}/p1.nii#1"] + [f"{covid}/p2.nii.gz#{k}" for k in range(3)]
    assert list(y) == ["COVID"] * 5 + ["normal"] * 3
    assert list(groups[:5]) == ["p1"] * 2 + ["p2"] * 3
    key_a, key_b = patient_key(tmp_path / "normal" / "x0.dcm"), patient_key(tmp_path / "normal" / "y.dcm")
    by_patient = {g: [Path(x).name for x, gg in zip(X, groups) if gg == g] for g in (key_a, key_b)}
    assert by_patient == {key_a: ["x1.dcm", "x0.dcm"], key_b: ["y.dcm"]}
    assert not {"PAT-A", "PAT-B"} & set(groups)
    assert all(isinstance(a, np.ndarray) and a.dtype == object for a in (X, y, groups))


def test_load_dicom_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        load_dicom_folder(tmp_path / "absent")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_dicom_folder(tmp_path)
    (tmp_path / "COVID").mkdir()
    (tmp_path / "COVID" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"COVID.*holds no DICOM series or NIfTI volume"):
        load_dicom_folder(tmp_path)


def test_load_image_folder_groups(tmp_path):
    for relative in ("COVID/p1/a.png", "COVID/p1/deeper/b.png", "COVID/c.png", "normal/p2/d.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / relative)
    X, y = load_image_folder(tmp_path)
    X3, y3, groups = load_image_folder(tmp_path, return_groups=True)
    assert list(X3) == list(X) and list(y3) == list(y)
    assert dict(zip(map(str, X3), groups)) == {
        str(tmp_path / "COVID/c.png"): str(tmp_path / "COVID/c.png"), str(tmp_path / "COVID/p1/a.png"): "p1",
        str(tmp_path / "COVID/p1/deeper/b.png"): "p1", str(tmp_path / "normal/p2/d.png"): "p2"}


# -- the real COVID-CT-MD sample -------------------------------------------------------------------------------

@needs_sample
def test_real_sample_folder_patients_labels_and_anatomical_order():
    X, y, groups = load_dicom_folder(SAMPLE)
    assert len(X) == 60 and len(set(groups)) == 6
    assert sorted(set(y)) == ["CAP", "COVID-19", "normal"]
    with open(SAMPLE / "slices.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for patient in set(groups):
        expected = sorted((r for r in rows if r["patient_folder"] == patient), key=lambda r: float(r["slice_location"]))
        assert [Path(x).name for x, g in zip(X, groups) if g == patient] == [r["file"] for r in expected]
        assert {label for label, g in zip(y, groups) if g == patient} == {expected[0]["class"]}


@needs_sample
def test_real_compressed_slices_decode_to_plausible_and_exact_hu(tmp_path):
    files = sorted(SAMPLE.glob("*/*/*.dcm"))
    assert len(files) == 60
    for i, file in enumerate(files):
        hu = read_hu(file)
        assert hu.shape == (512, 512) and hu.dtype == np.float32
        assert hu.min() <= -1000 and hu.max() < 4000
        assert np.mean(np.abs(hu + 1000) < 100) > 0.05  # air around -1000 HU
        if i % 10 == 0:  # one per patient: the same file re-saved uncompressed
            ds = pydicom.dcmread(file)
            ds.decompress()
            ds.save_as(tmp_path / "plain.dcm")
            assert not pydicom.dcmread(tmp_path / "plain.dcm").file_meta.TransferSyntaxUID.is_compressed
            np.testing.assert_array_equal(read_hu(tmp_path / "plain.dcm"), hu)


@needs_sample
def test_real_sample_as_nifti_equals_its_dicom_slices(tmp_path):
    files = expand_series(SAMPLE / "COVID-19" / "P001")
    volume = nifti_from_dicom(files, tmp_path / "P001.nii.gz")
    assert expand_series(volume) == [f"{volume}#{k}" for k in range(len(files))]
    for k in (0, 4, 9):
        np.testing.assert_array_equal(read_hu(f"{volume}#{k}"), read_hu(files[k]))
    ds = pydicom.dcmread(files[0])
    ds.decompress()
    ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
    ds.save_as(tmp_path / "flipped.dcm")
    np.testing.assert_array_equal(read_hu(tmp_path / "flipped.dcm"), read_hu(files[0]))
