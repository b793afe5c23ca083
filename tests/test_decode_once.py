"""Issue 25, decode once: each file is decoded once, at the largest size its copies need; the case's content key
stays what it was; the display image moves by a rounding-level amount at most; damaged data is still refused.

The pinned values were computed before the change, on the real SIIM-ISIC 2020 DICOM ISIC_0076742 (6000×4000, JPEG
baseline), its JPEG frame written out as a .jpg file, and the HAM10000 JPEG ISIC_0024306 (200×150):
- `CONTENT_KEYS`: `Case.content_key` (skinapp/io/identity.py), from the stored data, not the decoded pixels;
- `OLD_DISPLAY_KEYS`: `display_pixels_key` of the display image the importer made before (the formula the store
  names a case with: pixels + shape), to prove the reference image rebuilt here is the old display image, bit for
  bit. It stays the same where nothing is resized (the small JPEG) and moves with the display image where the
  display image is now made from the zoom-size decode (the 6000×4000 image): that is why the content key is not it.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import simplejpeg
from PIL import Image, ImageFile
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEGBaseline8Bit

import skinapp.io.images
import skinapp.io.pixels
from dicom_factory import lesion_image, make_dicom
from skinapp.io import load_cases
from skinapp.io.deidentify import run_deidentify
from skinapp.io.identity import dicom_frame_keys, display_pixels_key, jpeg_file_key

DICOM_NAME = "ISIC_0076742"
HAM_NAME = "ISIC_0024306"
CONTENT_KEYS = {
    f"{DICOM_NAME}.dcm": "59c89519b67a93f448e6c75ec67026f011b5d436ad19a9515190e8da5734212a",
    f"{DICOM_NAME}.jpg": "74f94a6f60615823fb372dbf77f574dc2fec6c7f383816fc65f9e661ddb978bc",
    f"{HAM_NAME}.jpg": "f41ffc2fbe723c99b78d60b1d33d27f69e59b7cc734dc14b51a6e1e1aa750681",
}
OLD_DISPLAY_KEYS = {
    f"{DICOM_NAME}.dcm": "0439bf4c14fd3e928b402a41935202fc61e02fcd0e563d484ed9d8f617f33906",
    f"{DICOM_NAME}.jpg": "0439bf4c14fd3e928b402a41935202fc61e02fcd0e563d484ed9d8f617f33906",
    f"{HAM_NAME}.jpg": "9a46b89dc187646df1d9a4db5899c42694d7acc2110f65e29ebc3d1aef7b3e45",
}


def _old_display(frame: bytes) -> np.ndarray:
    """The display image as the importer made it before: a strict decode at the smallest DCT scale covering
    1024 px, then Pillow's bicubic resize to 1024 px."""
    decoded = simplejpeg.decode_jpeg(frame, colorspace="RGB", min_width=1024, min_height=683, strict=True)
    return np.asarray(Image.fromarray(decoded).resize((1024, 683), Image.Resampling.BICUBIC, reducing_gap=2.0))


@pytest.fixture(scope="module")
def real_files(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("real")
    dicom = shared_data / "siim_isic_2020" / "dicom" / f"{DICOM_NAME}.dcm"
    frame = next(generate_frames(pydicom.dcmread(dicom).PixelData, number_of_frames=1))
    (folder / f"{DICOM_NAME}.jpg").write_bytes(frame)  # a real 6000×4000 JPEG: the DICOM's own stream
    return {dicom.name: dicom, f"{DICOM_NAME}.jpg": folder / f"{DICOM_NAME}.jpg",
            f"{HAM_NAME}.jpg": shared_data / "ham10000" / "images" / f"{HAM_NAME}.jpg"}


def test_content_key_is_what_it_was_and_the_display_image_moves_by_rounding_only(real_files):
    cases, report = load_cases(list(real_files.values()))
    assert not report.rejected
    by_source = {Path(c.source).name: c for c in cases}
    assert {name: c.content_key for name, c in by_source.items()} == CONTENT_KEYS
    frame = real_files[f"{DICOM_NAME}.jpg"].read_bytes()
    old = _old_display(frame)
    assert display_pixels_key(old) == OLD_DISPLAY_KEYS[f"{DICOM_NAME}.dcm"]  # the reference is the old display image
    for name in (f"{DICOM_NAME}.dcm", f"{DICOM_NAME}.jpg"):
        case = by_source[name]
        assert case.image.shape == old.shape and case.original_size == (6000, 4000)
        assert np.abs(case.image.astype(int) - old).mean() <= 2.0, name  # measured: 0.51 of 255
        assert case.zoom_jpeg is not None
        assert np.asarray(Image.open(io.BytesIO(case.zoom_jpeg))).shape == (1365, 2048, 3)
    small = by_source[f"{HAM_NAME}.jpg"]  # nothing to resize: the very same pixels as before
    assert display_pixels_key(small.image) == OLD_DISPLAY_KEYS[f"{HAM_NAME}.jpg"] and small.zoom_jpeg is None


def test_content_key_ignores_metadata_and_how_the_file_is_read(real_files, tmp_path):
    """A de-identified copy (other header, JPEG comment segments removed; or made by `skinapp deidentify`) is the
    same image; so is the full-size read and the display-size read; a turned one is not."""
    ds = pydicom.dcmread(real_files[f"{DICOM_NAME}.dcm"])
    ds.PatientID, ds.PatientName = "ANON", "ANON"
    ds.save_as(tmp_path / "anonymised.dcm")
    frame = real_files[f"{DICOM_NAME}.jpg"].read_bytes()
    (tmp_path / "commented.jpg").write_bytes(frame[:2] + b"\xff\xfe\x00\x0dcamera 1234" + frame[2:])
    cases, _ = load_cases([tmp_path / "anonymised.dcm", tmp_path / "commented.jpg"], keep_duplicates=True)
    assert [c.content_key for c in cases] == [CONTENT_KEYS[f"{DICOM_NAME}.dcm"], CONTENT_KEYS[f"{DICOM_NAME}.jpg"]]
    assert dicom_frame_keys(ds, 1) == [CONTENT_KEYS[f"{DICOM_NAME}.dcm"]]
    assert jpeg_file_key(frame) == CONTENT_KEYS[f"{DICOM_NAME}.jpg"]
    assert jpeg_file_key(frame, orientation=6) != jpeg_file_key(frame)  # turned: shown otherwise, another case
    (full,), _ = load_cases([real_files[f"{HAM_NAME}.jpg"]], max_side=None)
    assert full.content_key == CONTENT_KEYS[f"{HAM_NAME}.jpg"]
    assert run_deidentify([real_files[f"{DICOM_NAME}.dcm"]], tmp_path / "shared", key="test") == 0
    (shared,), _ = load_cases([tmp_path / "shared"])
    assert shared.source != f"{DICOM_NAME}.dcm" and shared.content_key == CONTENT_KEYS[f"{DICOM_NAME}.dcm"]


def _count_calls(monkeypatch, module, name: str) -> list[tuple]:
    calls: list[tuple] = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args[1:] + tuple(kwargs.values()))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_each_file_is_decoded_once_at_the_zoom_size(tmp_path, monkeypatch):
    big = cv2.resize(lesion_image(), (3000, 2000), interpolation=cv2.INTER_LINEAR)
    Image.fromarray(big).save(tmp_path / "phone.jpg", quality=95)
    make_dicom(tmp_path / "scope.dcm", cv2.resize(lesion_image(seed=1), (3200, 2400)), JPEGBaseline8Bit)
    image_decodes = _count_calls(monkeypatch, skinapp.io.images, "decode_jpeg_strict")
    dicom_decodes = _count_calls(monkeypatch, skinapp.io.pixels, "decode_jpeg_strict")
    pillow_loads = _count_calls(monkeypatch, ImageFile.ImageFile, "load")  # Pillow decoding a file
    cases, report = load_cases([tmp_path / "phone.jpg", tmp_path / "scope.dcm"])
    assert not report.rejected and all(c.zoom_jpeg is not None for c in cases)
    assert image_decodes == [((2048, 1365),)]  # one strict decode, large enough for the zoom copy
    assert dicom_decodes == [((2048, 1536), False)]
    assert not pillow_loads  # and no second decode by Pillow


def _flipped(data: bytes) -> bytes:
    damaged = bytearray(data)
    coded = data.index(b"\xff\xda") + 20
    for position in np.random.default_rng(1).integers(coded, len(data) - 4, 20):
        damaged[position] ^= 0x5A
    return bytes(damaged)


def test_damaged_or_cut_streams_are_still_refused_naming_the_file(real_files, tmp_path):
    frame = real_files[f"{DICOM_NAME}.jpg"].read_bytes()
    (tmp_path / "flipped.jpg").write_bytes(_flipped(frame))
    (tmp_path / "cut.jpg").write_bytes(frame[: len(frame) * 2 // 3])
    ds = pydicom.dcmread(real_files[f"{DICOM_NAME}.dcm"])
    ds.PixelData = encapsulate([frame[: len(frame) * 2 // 3]])
    ds.save_as(tmp_path / "cut.dcm")
    for max_side in (1024, 256, None):  # with a zoom copy, display size only, full size
        cases, report = load_cases(sorted(tmp_path.iterdir()), max_side=max_side)
        assert not cases
        reasons = {Path(r.file).name: r.reason for r in report.rejected}
        assert set(reasons) == {"flipped.jpg", "cut.jpg", "cut.dcm"}
        for name, reason in reasons.items():
            assert reason.startswith("image data is damaged: the JPEG decoder reports"), (name, reason)
            assert "ask for the original file" in reason
        assert all(f"{name}: image data is damaged" in report.summary() for name in reasons)


@pytest.mark.parametrize("kind", ["colour", "progressive", "grey", "cmyk"])
def test_a_small_jpeg_is_the_very_image_pillow_shows(tmp_path, kind):
    """Nothing to resize: the one strict decode gives Pillow's pixels exactly, so the display image, and the
    store's key of it, stay what they were."""
    picture = Image.fromarray(lesion_image(150, 200, seed=2))
    picture = {"grey": picture.convert("L"), "cmyk": picture.convert("CMYK")}.get(kind, picture)
    picture.save(tmp_path / "small.jpg", quality=90, progressive=kind == "progressive")
    with Image.open(tmp_path / "small.jpg") as shown:
        expected = np.asarray(shown.convert("RGB"))
    (case,), report = load_cases([tmp_path / "small.jpg"])
    assert not report.rejected and np.array_equal(case.image, expected) and case.zoom_jpeg is None


def test_a_turned_large_jpeg_is_decoded_once_and_shown_upright(tmp_path):
    big = cv2.resize(lesion_image(seed=4), (3000, 2000), interpolation=cv2.INTER_LINEAR)
    big[:200, :300] = 0  # a dark corner, to see where it goes
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(big).save(tmp_path / "turned.jpg", quality=95, exif=exif)
    (case,), _ = load_cases([tmp_path / "turned.jpg"])
    upright = np.rot90(big, k=-1)
    assert case.original_size == (2000, 3000) and case.image.shape == (1024, 683, 3)
    assert np.abs(case.image.astype(int) - cv2.resize(upright, (683, 1024), interpolation=cv2.INTER_AREA)).mean() < 3
    assert np.asarray(Image.open(io.BytesIO(case.zoom_jpeg or b""))).shape == (2048, 1365, 3)
    assert case.content_key == jpeg_file_key((tmp_path / "turned.jpg").read_bytes(), orientation=6)


def test_the_store_names_a_case_by_its_content_key_and_still_finds_cases_stored_by_their_pixels(tmp_path):
    from skinapp.io.case import Case
    from skinapp.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'cases.db'}")
    image = lesion_image(64, 80)
    before = store.add_case(Case(name="old", image=image, source="old.png"), "importer")  # stored by its pixels
    again = store.add_case(Case(name="old", image=image, source="old.png", content_key="k" * 64), "importer")
    assert again.id == before.id and not again.new
    other = store.add_case(Case(name="new", image=image[::-1].copy(), source="new.jpg", content_key="n" * 64), "importer")
    assert other.new
    # the same file read again, decoded a little differently (another resampler): the same case
    nudged = np.clip(image[::-1].astype(int) + 1, 0, 255).astype(np.uint8)
    assert store.add_case(Case(name="new", image=nudged, source="new.jpg", content_key="n" * 64), "importer").id == other.id
    assert display_pixels_key(image)  # the old name is still computable for lookups
