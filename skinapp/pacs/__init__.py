"""The clinic's PACS: studies pulled over DICOMweb (QIDO-RS search, WADO-RS retrieve) and analysed as an upload is,
results sent back as a DICOM Structured Report (TID 1500, STOW-RS), and images received from devices over DICOM
(C-STORE). `connection` holds the server and its errors, `query` the search, `retrieve` the images as files to
import, `structured_report` the SR, `send` the push with its audit, `listener` the Storage SCP."""
