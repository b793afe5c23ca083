import io
import json
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless

from dicom_factory import lesion_image, make_dicom
from skinapp.cli import main
from skinapp.io import load_cases
from skinapp.io.deid_profile import table_tags

IDENTIFYING = {
    "PatientName": "Doe^Jane", "PatientID": "MRN-4471", "PatientBirthDate": "19610305",
    "InstitutionName": "St Elsewhere Skin Clinic", "ReferringPhysicianName": "House^Gregory",
    "OperatorsName": "Nurse^Ratched", "AccessionNumber": "ACC99812", "StationName": "DERMLITE-7",
    "StudyDescription": "Jane's mole, left shoulder", "DeviceSerialNumber": "SN-123456",
}


def _shared_study_files(tmp_path):
    first = make_dicom(tmp_path / "in" / "one.dcm", lesion_image(), JPEGBaseline8Bit, StudyDate="20240131",
                       ContentDate="20240131",
                       PatientAge="093Y", PatientSex="F", **IDENTIFYING)
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ContentDate = "20240210"
    ds.add_new(0x00091001, "LO", "private vendor note about Jane Doe")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.BurnedInAnnotation = "NO"
    ds.save_as(tmp_path / "in" / "two.dcm")
    return ds


def test_deidentified_copies_keep_the_case_and_drop_the_person(tmp_path):
    (tmp_path / "in").mkdir()
    original = _shared_study_files(tmp_path)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make
    exif[0x0131] = "Clinic laptop of Dr House"
    Image.fromarray(lesion_image(seed=9)).save(tmp_path / "in" / "phone.jpg", exif=exif)
    out = tmp_path / "shared"
    assert main(["deidentify", str(tmp_path / "in"), "--out", str(out), "--key", "test-key"]) == 0

    copies = sorted(out.glob("*.dcm"))
    assert len(copies) == 2 and not any("one" in c.name or "two" in c.name for c in copies)
    for copy in copies:
        raw = copy.read_bytes()
        for value in [*IDENTIFYING.values(), original.StudyInstanceUID, "Jane", "Doe", "19610305", "20240131", "20240210"]:
            assert value.encode() not in raw, value
    one, two = sorted((pydicom.dcmread(c) for c in copies), key=lambda d: d.ContentDate)
    assert one.StudyInstanceUID == two.StudyInstanceUID != original.StudyInstanceUID  # replaced consistently
    assert one.SOPInstanceUID != two.SOPInstanceUID and one.file_meta.MediaStorageSOPInstanceUID == one.SOPInstanceUID
    assert one.PatientID == two.PatientID == one.PatientName and one.PatientID.startswith("patient-")
    shift = [(pydicom.valuerep.DA(d.ContentDate) - pydicom.valuerep.DA(o)).days
             for d, o in ((one, "20240131"), (two, "20240210"))]
    assert shift[0] == shift[1] < 0  # dates moved by one per-patient offset: the interval survives
    assert one.PatientAge == "090Y" and one.PatientSex == "F"  # characteristics kept, very old ages capped
    assert one.PatientIdentityRemoved == "YES" and "113100" in [c.CodeValue for c in one.DeidentificationMethodCodeSequence]
    assert np.array_equal(one.pixel_array, pydicom.dcmread(tmp_path / "in" / "one.dcm").pixel_array)

    export = json.loads((out / "export.json").read_text())
    warnings = {item["file"]: item["warnings"] for item in export["files"]}
    png = next(name for name in warnings if name.endswith(".png"))
    assert not Image.open(out / png).getexif()
    burned = [w for name, ws in warnings.items() if name.endswith(".dcm") for w in ws]
    assert sorted(burned) == [  # "NO" is not taken on trust
        "the file does not say whether text is burned into the image; check it before sharing",
        "the file says no text is burned into the image, which is not taken on trust; check it before sharing"]

    cases, report = load_cases([out], metadata_csv=out / "metadata.csv")  # the copies import like any case
    assert len(cases) == 3 and [r.file for r in report.rejected] == [str(out / "export.json")]
    patients = {c.name: c.patient_id for c in cases}
    assert patients[copies[0].stem] == patients[copies[1].stem] == one.PatientID


def test_the_same_key_gives_the_same_pseudonyms(tmp_path):
    (tmp_path / "in").mkdir()
    _shared_study_files(tmp_path)
    for run in ("a", "b", "c"):
        key = ["--key", "k1"] if run != "c" else []
        assert main(["deidentify", str(tmp_path / "in" / "one.dcm"), "--out", str(tmp_path / run), *key]) == 0
    ids = [pydicom.dcmread(next((tmp_path / run).glob("*.dcm"))).PatientID for run in ("a", "b", "c")]
    assert ids[0] == ids[1] != ids[2]  # without a key, exports cannot be linked


# Every attribute of PS3.15 Table E.1-1, planted with a value that names it, must lose that value; only the
# patient characteristics the export keeps on purpose (age, sex, size, weight) may survive.
KEPT_ON_PURPOSE = {"PatientAge", "PatientSex", "PatientSize", "PatientWeight"}
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}


def _marker(number: int) -> str:
    return f"PLANT{number:03d}Q"


def _plant(ds, tag, number):
    """A value for `tag` that only this attribute carries; returns what to look for afterwards."""
    vr = dictionary_VR(tag) if tag in DicomDictionary else "LO"  # newer than pydicom's dictionary: text
    vr = vr.split(" or ")[0]
    marker = _marker(number)
    if vr in TEXT_VRS:
        value = marker
    elif vr == "SQ":
        item = pydicom.Dataset()
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.10.1.{number}"
        item.StationName = marker
        item.PersonName = f"{marker}^Nested"
        value = pydicom.Sequence([item])
    else:
        value = {"DA": "19870605", "DT": "19870605101010", "TM": "101010.5", "AS": "041Y", "DS": "123.5",
                 "IS": "4242", "UI": f"1.2.826.0.1.3680043.10.2.{number}", "US": 4242, "SS": 4242, "UL": 4242,
                 "FL": 42.5, "FD": 42.5}.get(vr, marker.encode())
    ds.add_new(tag, vr, value)
    return vr, value


def _planted_real_or_synthetic(source, tmp_path, request):
    if source == "synthetic":
        return make_dicom(tmp_path / "planted.dcm", lesion_image(), JPEGBaseline8Bit)
    data = request.getfixturevalue("shared_data")
    return sorted((data / "siim_isic_2020" / "dicom").glob("*.dcm"))[0]


# the real file is 6000×4000: decoding it twice for the pixel check below takes seconds
@pytest.mark.parametrize("source", ["synthetic", pytest.param("real SIIM-ISIC 2020 file",
                                                              marks=[pytest.mark.data, pytest.mark.slow])])
def test_every_attribute_of_table_e1_1_loses_its_value(source, tmp_path, request):
    original = _planted_real_or_synthetic(source, tmp_path, request)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(original)
        # command (0000) and file meta (0002) attributes cannot sit in a stored data set; the copy's own file meta
        # UID is checked below
        planted = {tag: _plant(ds, tag, n) for n, tag in enumerate(table_tags()) if tag.group not in (0, 2)}
        for group in (0x5000, 0x6002):  # a curve and an overlay plane, with their descriptions
            ds.add_new((group, 0x0022), "LO", f"PLANTGROUP{group:04X}")
            ds.add_new((group, 0x3000), "OW", b"\x01\x00" * 8)
        ds.add_new((0x6002, 0x1500), "LO", "PLANTOVERLAYLABEL")
        (tmp_path / "in").mkdir()
        ds.save_as(tmp_path / "in" / "planted.dcm")
        assert main(["deidentify", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--key", "k"]) == 0
        copy_path = next((tmp_path / "out").glob("*.dcm"))
        copy = pydicom.dcmread(copy_path)
    raw = copy_path.read_bytes()

    kept = []
    for tag, (vr, value) in planted.items():
        keyword = keyword_for_tag(tag) or str(tag)
        element = copy.get(tag)
        now = None if element is None else element.value
        if now in (None, "", b"") or (vr == "SQ" and len(now) == 0):
            continue
        if vr == "SQ":
            item = now[0]
            assert item.ReferencedSOPInstanceUID != value[0].ReferencedSOPInstanceUID, keyword
            assert item.get("PersonName") != value[0].PersonName, keyword
            assert item.get("StationName") != value[0].StationName, keyword
        elif now == value or str(now) == str(value):
            kept.append(keyword)
    assert sorted(kept) == sorted(KEPT_ON_PURPOSE)
    leaked = [keyword_for_tag(tag) or str(tag) for tag, (vr, value) in planted.items()
              if isinstance(value, (str, pydicom.Sequence)) and _marker(table_tags().index(tag)).encode() in raw
              and keyword_for_tag(tag) not in KEPT_ON_PURPOSE]
    assert not leaked
    assert b"PLANTGROUP" not in raw and b"PLANTOVERLAYLABEL" not in raw and b"19870605" not in raw
    assert not [e for e in copy if e.tag.group & 0xFF00 in (0x5000, 0x6000)]
    assert copy.ContentDate != "19870605" and copy.PatientIdentityRemoved == "YES"
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID != ds.SOPInstanceUID
    assert np.array_equal(copy.pixel_array, pydicom.dcmread(original).pixel_array)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


EXIF = _segment(0xE1, b"Exif\0\0PLANTEXIF camera serial 0042, Dr House")
XMP = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>PLANTXMP</x:xmpmeta>")
COMMENT = _segment(0xFE, b"PLANTCOMMENT Jane Doe, left shoulder")


def _with_segments(frame: bytes, syntax) -> bytes:
    if syntax.startswith("1.2.840.10008.1.2.4.9") or syntax.startswith("1.2.840.10008.1.2.4.20"):
        siz_end = 4 + int.from_bytes(frame[4:6], "big")  # JPEG 2000: COM goes after SIZ in the main header
        return frame[:siz_end] + bytes([0xFF, 0x64]) + (len(b"\0\1PLANTCOMMENT") + 2).to_bytes(2, "big") \
            + b"\0\1PLANTCOMMENT" + frame[siz_end:]
    return frame[:2] + EXIF + XMP + COMMENT + frame[2:]


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEGLSLossless, JPEG2000Lossless, "progressive"])
def test_metadata_inside_compressed_frames_is_removed_and_pixels_stay(syntax, tmp_path):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "camera.dcm"
    if syntax == "progressive":
        make_dicom(path, lesion_image(), JPEGBaseline8Bit)
        ds = pydicom.dcmread(path)
        buffer = io.BytesIO()
        Image.fromarray(lesion_image()).save(buffer, "JPEG", quality=95, progressive=True)
        frame = buffer.getvalue()
        scans = frame.split(b"\xff\xda")  # a comment between two scans as well as before the first
        frame = _with_segments(scans[0] + b"\xff\xda" + scans[1] + COMMENT + b"\xff\xda" + b"\xff\xda".join(scans[2:]), "")
    else:
        make_dicom(path, lesion_image(), syntax)
        ds = pydicom.dcmread(path)
        frame = _with_segments(next(generate_frames(ds.PixelData, number_of_frames=1)), syntax)
    ds.PixelData = encapsulate([frame])
    ds.save_as(path)
    before = pydicom.dcmread(path).pixel_array
    assert b"PLANTCOMMENT" in path.read_bytes()

    assert main(["deidentify", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    copy_path = next((tmp_path / "out").glob("*.dcm"))
    raw = copy_path.read_bytes()
    assert b"PLANT" not in raw
    assert np.array_equal(pydicom.dcmread(copy_path).pixel_array, before)
    if syntax in (JPEGBaseline8Bit, "progressive"):
        assert b"JFIF\0" in raw  # the segment that says how to read the colours is kept


def test_overlay_bits_hidden_in_native_pixels_are_cleared(tmp_path):
    (tmp_path / "in").mkdir()
    grey = (lesion_image()[..., 0].astype(np.uint16) * 16)  # 12-bit values in 16-bit words
    path = make_dicom(tmp_path / "in" / "grey.dcm", grey.astype(np.uint8))
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    words = grey.copy()
    words[10:20, 10:60] |= 1 << 15  # an old-style overlay: letters drawn in bit 15
    ds.PixelData = words.tobytes()
    ds.save_as(path)
    assert main(["deidentify", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    copy = pydicom.dcmread(next((tmp_path / "out").glob("*.dcm")))
    stored = np.frombuffer(copy.PixelData, dtype="<u2").reshape(grey.shape)
    assert np.array_equal(stored, grey) and np.array_equal(copy.pixel_array, grey)
    export = json.loads((tmp_path / "out" / "export.json").read_text())
    assert any("overlay" in note for note in export["files"][0]["warnings"])


def test_a_name_planted_in_the_preamble_does_not_leave(tmp_path):
    (tmp_path / "in").mkdir()
    path = make_dicom(tmp_path / "in" / "lesion.dcm", lesion_image())
    data = bytearray(path.read_bytes())
    data[:128] = b"Patient: Jane Q. Public, born 1961".ljust(128, b" ")  # the preamble is free for any use
    path.write_bytes(bytes(data))
    assert pydicom.dcmread(path).preamble.startswith(b"Patient: Jane")
    assert main(["deidentify", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    copy = next((tmp_path / "out").glob("*.dcm")).read_bytes()
    assert copy[:128] == bytes(128) and copy[128:132] == b"DICM" and b"Jane" not in copy


def _planted(path):
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.TextValue = "seen by Dr Jane Q. Public, who knows the patient"
    ds.ContentSequence = pydicom.Sequence([item])
    ds.ContentDescription = "Mrs Smith's mole"
    ds.ManufacturerModelName = "DermLite of J. Public"
    ds.save_as(path)


@pytest.mark.parametrize("keep", [False, True])
def test_free_text_the_table_does_not_name_is_emptied_by_default_and_listed_either_way(tmp_path, keep):
    (tmp_path / "in").mkdir()
    _planted(make_dicom(tmp_path / "in" / "lesion.dcm", lesion_image()))
    options = ["--keep-descriptors"] if keep else []
    assert main(["deidentify", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *options]) == 0
    copy = next((tmp_path / "out").glob("*.dcm"))
    data = copy.read_bytes()
    (entry,) = json.loads((tmp_path / "out" / "export.json").read_text())["files"]
    planted = ["ContentDescription", "ManufacturerModelName"]  # a nested TextValue goes under the basic profile
    if keep:
        assert b"Mrs Smith" in data
        assert set(planted) <= set(entry["free_text_kept"]) and not entry["free_text_emptied"]
        assert any(w.startswith("free text kept (check it reads no name or story)") for w in entry["warnings"])
    else:
        assert b"Public" not in data and b"Smith" not in data
        assert entry["free_text_emptied"] == planted
        codes = [c.CodeValue for c in pydicom.dcmread(copy).DeidentificationMethodCodeSequence]
        assert "113105" in codes  # Clean Descriptors Option, said in the file
