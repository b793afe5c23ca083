import json

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import JPEGBaseline8Bit

from dicom_factory import lesion_image, make_dicom
from skinapp.cli import main
from skinapp.io import load_cases

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
    assert burned == ["the file does not say whether text is burned into the image; check it before sharing"]

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
