"""Is this compressed image whole? Decoders repair what they can and stay quiet: a JPEG with flipped bytes
decodes into a picture with smeared or shifted blocks and no error. A lesion shown that way must not be
diagnosed, so damaged frames are found here and refused by the readers.

- JPEG (8-bit baseline, extended, progressive): decoded with libjpeg-turbo in strict mode (`simplejpeg`), which
  turns the decoder's warnings ("Corrupt JPEG data", "premature end of data segment") into errors.
- JPEG 2000: the codestream's own bookkeeping must add up (tile-parts of the stated lengths, ending at EOC).
  Flipped bits inside JPEG 2000 coded data are not detectable this way; the decoder's own errors still refuse
  the file.
Other codecs (JPEG lossless, JPEG-LS, RLE) are checked only by their decoders' errors.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

JPEG_SOI = b"\xff\xd8"
J2K_SOC = b"\xff\x4f"
_J2K_SOT, _J2K_EOC = b"\xff\x90", b"\xff\xd9"


class DamagedImageData(ValueError):
    """The image data is damaged; the message says how, in the decoder's words."""


def is_eight_bit_jpeg(data: bytes) -> bool:
    """Whether the stream's frame header is an 8-bit DCT one (what libjpeg-turbo's 8-bit decoder reads)."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return position + 4 < len(data) and data[position + 4] == 8
        if (0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xDA:
            return False  # lossless, arithmetic or hierarchical: not for this decoder
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return False


def jpeg_header(data: bytes) -> tuple[int, int, str, str]:
    """(height, width, colour space, subsampling) from the stream's header, without decoding."""
    return simplejpeg.decode_jpeg_header(data)


def decode_jpeg_strict(data: bytes, min_size: tuple[int, int] | None = None, grey: bool = False) -> np.ndarray:
    """The image decoded at the smallest DCT scale at least `min_size` (width, height) large (None: full size),
    or DamagedImageData naming what the decoder found."""
    width, height = min_size or (0, 0)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "RGB", min_width=width,
                                      min_height=height, strict=True)
    except ValueError as exc:
        raise DamagedImageData(f"the JPEG decoder reports “{str(exc).strip()}”") from None


def check_jpeg(data: bytes) -> None:
    """Raises DamagedImageData where an 8-bit JPEG stream is damaged; other streams pass untouched."""
    if data.startswith(JPEG_SOI) and is_eight_bit_jpeg(data):
        decode_jpeg_strict(data, (1, 1), grey=True)  # smallest scale: every coded bit is still entropy-decoded


def check_j2k(data: bytes) -> None:
    """Raises DamagedImageData where a JPEG 2000 codestream's tile-parts do not add up to a whole stream."""
    if not data.startswith(J2K_SOC):
        return
    position = data.find(_J2K_SOT, 2)
    if position < 0:
        raise DamagedImageData("the JPEG 2000 stream holds no image tiles")
    while data[position:position + 2] == _J2K_SOT:
        length = int.from_bytes(data[position + 6:position + 10], "big")  # Psot: the whole tile-part
        if length == 0:  # "until the end of the stream": only the last tile-part may say so
            return
        position += length
    if data[position:position + 2] != _J2K_EOC:
        found = "ends early" if position >= len(data) else "has data where the next tile should start"
        raise DamagedImageData(f"the JPEG 2000 stream {found} (its tile lengths do not add up)")


def check_frame(data: bytes) -> None:
    check_jpeg(data)
    check_j2k(data)
