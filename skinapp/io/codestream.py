"""Metadata segments inside compressed pixel data: JPEG (baseline, extended, lossless, JPEG-LS) APPn and COM
segments, JPEG 2000 COM segments. Removing them leaves every coded pixel as it was.

A camera or dermatoscope writes EXIF (APP1: device, serial number, dates, GPS), XMP, thumbnails (APP0 JFXX,
APP1) and free-text comments into the stream; DICOM attributes never show them.
"""

from __future__ import annotations

import re

KEPT_APP_SEGMENTS = (  # needed to decode the colours right, and nothing identifying
    (0xE0, b"JFIF\0"),
    (0xEE, b"Adobe"),
)
JPEG_COM = 0xFE
J2K_COM = 0x64
J2K_SOC = b"\xff\x4f"
J2K_SOT = 0x90
JPEG_SOI = b"\xff\xd8"
JPEG_SOS = 0xDA
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xDA)})  # TEM, RSTn, SOI, EOI: markers without a length field


def _is_metadata(marker: int, payload: bytes) -> bool:
    if marker == JPEG_COM:
        return True
    if 0xE0 <= marker <= 0xEF:
        return not any(marker == kept and payload.startswith(signature) for kept, signature in KEPT_APP_SEGMENTS)
    return False


_MARKER = re.compile(rb"\xff[\xc0-\xcf\xd8-\xfe]")  # 0xFF and a marker code: neither stuffing, RSTn nor a fill byte


def _next_marker(data: bytes, start: int) -> int:
    """Position of the next marker after entropy-coded data (0xFF00 stuffing, RSTn and, in JPEG-LS, 0xFF
    followed by a byte below 0x80 belong to the data)."""
    found = _MARKER.search(data, start)
    return len(data) if found is None else found.start()


def strip_jpeg_metadata(data: bytes) -> bytes:
    """The same JPEG or JPEG-LS stream without COM segments and APPn segments other than JFIF and Adobe.
    Anything that does not parse as a JPEG stream is returned unchanged (the caller decides what that means)."""
    if not data.startswith(JPEG_SOI):
        return data
    kept = [JPEG_SOI]
    position = 2
    while position + 1 < len(data):
        if data[position] != 0xFF:
            return data
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _NO_LENGTH:
            kept.append(data[position:position + 2])
            if marker == 0xD9:  # EOI
                kept.append(data[position + 2:])
                return b"".join(kept)
            end = _next_marker(data, position + 2)
            kept.append(data[position + 2:end])
            position = end
            continue
        if position + 4 > len(data):
            return data
        end = position + 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if end > len(data):
            return data
        if not _is_metadata(marker, data[position + 4:end]):
            kept.append(data[position:end])
        if marker == JPEG_SOS:  # coded data follows, up to the next marker
            following = _next_marker(data, end)
            kept.append(data[end:following])
            end = following
        position = end
    return b"".join(kept)


def strip_j2k_comments(data: bytes) -> bytes:
    """A JPEG 2000 codestream without the COM segments of its main header."""
    if not data.startswith(J2K_SOC):
        return data
    kept = [J2K_SOC]
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == J2K_SOT:
            break
        end = position + 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if end > len(data):
            return data
        if marker != J2K_COM:
            kept.append(data[position:end])
        position = end
    kept.append(data[position:])
    return b"".join(kept)


def strip_metadata(frame: bytes) -> bytes:
    """One compressed frame without the metadata segments its codec allows; other data is returned as it is."""
    if frame.startswith(JPEG_SOI):
        return strip_jpeg_metadata(frame)
    if frame.startswith(J2K_SOC):
        return strip_j2k_comments(frame)
    return frame
