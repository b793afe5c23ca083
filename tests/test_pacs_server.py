"""The scratch PACS (tests/orthanc_server.py) as the app will meet a clinic's: a real SIIM-ISIC DICOM goes in by
STOW-RS and is found again by QIDO-RS, over HTTP basic authentication, which refuses a wrong password."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_auth
from orthanc_server import QidoWildcardAdapter, qido_value
from requests.auth import HTTPBasicAuth


def _client(orthanc, password: str) -> DICOMwebClient:
    session = create_session_from_auth(HTTPBasicAuth(orthanc.user, password))
    session.trust_env = False  # the PACS is on 127.0.0.1: never through a proxy named in the environment
    session.mount(orthanc.url, QidoWildcardAdapter())
    return DICOMwebClient(orthanc.dicomweb_url, session=session)


@pytest.fixture(scope="module")
def siim_dicom(shared_data) -> Path:
    """The smallest of the SIIM-ISIC 2020 DICOMs, as the challenge distributed it."""
    files = sorted((shared_data / "siim_isic_2020" / "dicom").glob("ISIC_*.dcm"), key=lambda path: path.stat().st_size)
    if not files:
        pytest.skip(f"no SIIM-ISIC DICOMs in {shared_data / 'siim_isic_2020' / 'dicom'}")
    return files[0]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the challenge's quoted values, kept as they are
def test_stow_then_qido_by_patient_id(orthanc, siim_dicom):
    dataset = pydicom.dcmread(siim_dicom)
    client = _client(orthanc, orthanc.password)

    receipt = client.store_instances([dataset])
    assert not receipt.get("FailedSOPSequence")  # Orthanc sends it empty
    assert [item.ReferencedSOPInstanceUID for item in receipt.ReferencedSOPSequence] == [dataset.SOPInstanceUID]

    # The file's PatientID is the image name wrapped in double quotes ("ISIC_0095805"), which this Orthanc cannot
    # receive (see orthanc_server): the quotes go as the one-character wildcard, ?ISIC_0095805?.
    found = client.search_for_instances(search_filters={"PatientID": qido_value(dataset.PatientID)},
                                        fields=["PatientID", "StudyInstanceUID", "SeriesInstanceUID"])
    assert len(found) == 1
    instance = pydicom.Dataset.from_json(found[0])
    assert instance.SOPInstanceUID == dataset.SOPInstanceUID
    assert instance.StudyInstanceUID == dataset.StudyInstanceUID
    assert instance.SeriesInstanceUID == dataset.SeriesInstanceUID
    assert instance.PatientID == dataset.PatientID


def test_wrong_password_is_refused(orthanc):
    with pytest.raises(requests.HTTPError) as refused:
        _client(orthanc, orthanc.password + "-wrong").search_for_studies()
    response = refused.value.response
    assert response is not None and response.status_code == 401
