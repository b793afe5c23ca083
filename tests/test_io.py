import cv2
import numpy as np
import pytest
from PIL import Image

from skinapp.io import load_cases, read_image
from skinapp.io.images import UnreadableImage


def test_images_become_rgb(tmp_path):
    Image.fromarray(np.full((10, 12), 128, np.uint8), "L").save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((10, 12, 4), np.uint8), "RGBA").save(tmp_path / "alpha.png")
    for name in ("grey.png", "alpha.png"):
        image = read_image(tmp_path / name)
        assert image.shape == (10, 12, 3) and image.dtype == np.uint8


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (20, 10, 3)


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "fake.jpg").write_text("hello")
    (tmp_path / "empty").mkdir()
    cases, report = load_cases([tmp_path / "good.png", tmp_path / "fake.jpg", tmp_path / "empty", tmp_path / "gone.png"])
    assert [c.case_id for c in cases] == ["good"]
    reasons = {r.file.name: r.reason for r in report.rejected}
    assert set(reasons) == {"fake.jpg", "empty", "gone.png"}
    assert "folder contains no files" in reasons["empty"]
    with pytest.raises(UnreadableImage):
        read_image(tmp_path / "fake.jpg")


def test_real_dicoms_with_sidecar(shared_data):
    folder = shared_data / "siim_isic_2020"
    cases, report = load_cases([folder / "dicom"], sidecar=folder / "metadata.csv")
    assert len(cases) == 20 and not report.rejected
    by_id = {c.case_id: c for c in cases}
    case = by_id["ISIC_0076742"]
    assert case.patient_id == "IP_2318163"
    assert case.metadata.sex == "male" and case.metadata.site.region == "upper extremity"
    assert case.image.shape == (4000, 6000, 3)
    # colour check: pydicom's RGB must equal Pillow's decoding of the same JPEG frame (not converted twice)
    import pydicom
    from pydicom.encaps import generate_frames
    import io as _io

    ds = pydicom.dcmread(case.source)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    pillow = np.asarray(Image.open(_io.BytesIO(frame)).convert("RGB"))
    assert np.abs(pillow[::50, ::50].astype(int) - case.image[::50, ::50].astype(int)).mean() < 3
