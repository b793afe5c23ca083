"""When a picture was taken, read from the file (issue 29): DICOM acquisition, content, series, study date in that
order; a JPEG's EXIF original date; placeholders and impossible dates read as unknown; a reviewer's correction is
checked and audited."""

import datetime as dt
import io

import pytest
from PIL import ExifTags, Image

from dicom_factory import lesion_image, make_dicom
from skinapp.io import InputFile, load_cases
from skinapp.io.capture_date import calendar_date, dicom_date_text, exif_date_text
from skinapp.store.edits import checked_case_changes
from skinapp.store.limits import InvalidText


def _jpeg(taken: str | None, tag=ExifTags.Base.DateTimeOriginal, kind: str = "JPEG") -> bytes:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[tag] = taken
    exif[ExifTags.Base.DateTime] = "2026:01:01 00:00:00"  # when the file was last changed: never the date taken
    buffer = io.BytesIO()
    Image.fromarray(lesion_image()).save(buffer, kind, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(("taken", "tag", "kind", "expected"), [
    ("2024:03:14 10:20:30", ExifTags.Base.DateTimeOriginal, "JPEG", "2024-03-14"),
    ("2023:11:02 08:00:00", ExifTags.Base.DateTimeDigitized, "JPEG", "2023-11-02"),
    ("2022:07:01 12:00:00", ExifTags.Base.DateTimeOriginal, "PNG", "2022-07-01"),
    ("0000:00:00 00:00:00", ExifTags.Base.DateTimeOriginal, "JPEG", None),   # what cameras write when unset
    (None, None, "JPEG", None),
])
def test_an_image_files_exif_original_date_is_the_day_it_was_taken(taken, tag, kind, expected):
    (case,), report = load_cases([InputFile.from_bytes(f"lesion.{kind.lower()}", _jpeg(taken, tag, kind))])
    assert not report.rejected and case.study_date == expected


@pytest.mark.filterwarnings("ignore:Invalid value for VR DT")  # the placeholder date is the point
def test_a_dicom_says_when_its_image_was_acquired_before_when_the_study_began(tmp_path):
    both = make_dicom(tmp_path / "a.dcm", lesion_image(), AcquisitionDateTime="20250310093000", ContentDate="20250311",
                      StudyDate="20240101")
    content = make_dicom(tmp_path / "b.dcm", lesion_image(seed=1), ContentDate="20250311", SeriesDate="20250301",
                         StudyDate="20240101")
    study_only = make_dicom(tmp_path / "c.dcm", lesion_image(seed=2), StudyDate="20240101")
    placeholder = make_dicom(tmp_path / "d.dcm", lesion_image(seed=3), AcquisitionDateTime="00000000", StudyDate="20240102")
    cases, _ = load_cases([both, content, study_only, placeholder])
    assert [c.study_date for c in cases] == ["2025-03-10", "2025-03-11", "2024-01-01", "2024-01-02"]


def test_only_real_dates_up_to_today_are_kept():
    assert dicom_date_text("20240229") == "2024-02-29" and dicom_date_text("20230229") is None
    assert dicom_date_text("2024") is None and dicom_date_text(None) is None
    assert exif_date_text(b"2021:05:06 07:08:09") == "2021-05-06" and exif_date_text("    :  :     ") is None
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    assert calendar_date(str(tomorrow.year), str(tomorrow.month), str(tomorrow.day)) is None
    assert calendar_date("1899", "12", "31") is None


def test_a_reviewer_enters_the_date_taken_as_a_checked_correction():
    assert checked_case_changes({"study_date": dt.date(2025, 3, 10)}) == {"study_date": "2025-03-10"}
    assert checked_case_changes({"study_date": None}) == {"study_date": None}
    with pytest.raises(InvalidText, match="not a date between 1900 and today"):
        checked_case_changes({"study_date": "2025-02-30"})
