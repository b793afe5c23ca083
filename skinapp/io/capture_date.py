"""When a picture was taken, as the file says: the DICOM acquisition / content / series / study date, or a JPEG's
EXIF original date. Only real calendar dates are kept; cameras write "0000:00:00" and other placeholders."""

from __future__ import annotations

import datetime as dt

from PIL import ExifTags, Image

EARLIEST_YEAR = 1900


def calendar_date(year: str, month: str, day: str, *, today: dt.date | None = None) -> str | None:
    """An ISO date (YYYY-MM-DD) where the parts make a real date between 1900 and today; else None."""
    try:
        date = dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    if date.year < EARLIEST_YEAR or date > (today or dt.date.today()):
        return None
    return date.isoformat()


def dicom_date_text(text: str | None) -> str | None:
    """A DICOM DA (YYYYMMDD) or DT (YYYYMMDDHHMMSS…) value as an ISO date."""
    text = (text or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    return calendar_date(text[:4], text[4:6], text[6:8])


def exif_date_text(text: str | bytes | None) -> str | None:
    """An EXIF date ("YYYY:MM:DD HH:MM:SS") as an ISO date."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    parts = (text or "").strip().split(" ")[0].replace("-", ":").split(":")
    return calendar_date(parts[0], parts[1], parts[2]) if len(parts) == 3 and all(p.isdigit() for p in parts) else None


def exif_taken_on(image: Image.Image) -> str | None:
    """The day a photograph was taken: EXIF DateTimeOriginal, else DateTimeDigitized. The plain DateTime tag is
    not used: it is when the file was last changed."""
    try:
        exif = image.getexif().get_ifd(ExifTags.IFD.Exif)
    except Exception:  # a damaged EXIF block does not stop the import; the date is then unknown
        return None
    for tag in (ExifTags.Base.DateTimeOriginal, ExifTags.Base.DateTimeDigitized):
        date = exif_date_text(exif.get(tag))
        if date:
            return date
    return None
