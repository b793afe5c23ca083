"""Small synthetic DICOM files for the tests: any transfer syntax, any attributes, made in the test itself."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, VLPhotographicImageStorage, generate_uid


def lesion_image(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A brown blob on pink skin with some texture: smooth enough for lossy codecs to keep its colours."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy - height / 2) / (height / 3)) ** 2 + ((xx - width / 2) / (width / 3)) ** 2 < 1
    image = np.where(inside[..., None], [110, 70, 50], [225, 170, 160]).astype(np.float64)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dicom(path: Path, pixels: np.ndarray, syntax: str = ExplicitVRLittleEndian, **attributes) -> Path:
    """pixels: (H, W, 3) RGB, (H, W) grey, or (frames, H, W[, 3]). Compressed with `syntax` by pydicom's own
    encoders, except JPEG baseline, which Pillow encodes (pydicom has no encoder for it)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = VLPhotographicImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "XC"
    colour = pixels.shape[-1] == 3
    if syntax == JPEGBaseline8Bit:
        frames = pixels if pixels.ndim == (4 if colour else 3) else pixels[None]
        encoded = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, "JPEG", quality=95, subsampling=2 if colour else 0)
            encoded.append(buffer.getvalue())
        ds.set_pixel_data(pixels, "RGB" if colour else "MONOCHROME2", 8)
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PhotometricInterpretation = "YBR_FULL_422" if colour else "MONOCHROME2"
        ds.LossyImageCompression = "01"
    else:
        ds.set_pixel_data(pixels, "RGB" if colour else "MONOCHROME2", 8)
        if syntax != ExplicitVRLittleEndian:
            ds.compress(syntax)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path
