"""Well-known UIDs, SOP classes and transfer syntaxes, kept as data.

Everything here is a literal table so that the DIMSE core, negotiation, the
conformance statement and the logs read the same source.  Collections are
tuples of UID strings; details live in the read-only maps :data:`SOP_CLASSES`
and :data:`TRANSFER_SYNTAXES`.

How the storage tables were made: the rows of ``_STORAGE_ROWS``,
``_RETIRED_STORAGE_ROWS`` and ``_NON_PATIENT_STORAGE_ROWS`` were generated
once from pydicom 3.0.2's UID dictionary, which transcribes PS3.6 Table A-1 of
DICOM edition 2024c.  The selection kept the entries of type "SOP Class" that
have "Storage" in their name, minus Storage Commitment Push/Pull (PS3.4 J) and
Media Storage Directory Storage (the PS3.10 DICOMDIR, never sent by C-STORE).
The nine non-patient classes are those of PS3.4 GG.3.  This module does not
import pydicom; SOP classes added after 2024c can still be accepted by listing
their UIDs in the ``storage_sop_classes`` configuration key.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "APPLICATION_CONTEXT_NAME",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "HTJ2K",
    "HTJ2K_LOSSLESS",
    "HTJ2K_LOSSLESS_RPCL",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "JPEG_2000",
    "JPEG_2000_LOSSLESS",
    "JPEG_2000_MC",
    "JPEG_2000_MC_LOSSLESS",
    "JPEG_BASELINE",
    "JPEG_EXTENDED",
    "JPEG_LOSSLESS",
    "JPEG_LOSSLESS_SV1",
    "JPEG_LS_LOSSLESS",
    "JPEG_LS_NEAR_LOSSLESS",
    "MPPS",
    "NON_PATIENT_STORAGE_SOP_CLASSES",
    "PATIENT_ROOT_QR_FIND",
    "PATIENT_ROOT_QR_GET",
    "PATIENT_ROOT_QR_MOVE",
    "PATIENT_STUDY_ONLY_QR_FIND",
    "PATIENT_STUDY_ONLY_QR_GET",
    "PATIENT_STUDY_ONLY_QR_MOVE",
    "QR_FIND_MODELS",
    "QR_GET_MODELS",
    "QR_MOVE_MODELS",
    "RLE_LOSSLESS",
    "SOP_CLASSES",
    "SOP_CLASS_NAMES",
    "STORAGE_COMMITMENT_PUSH",
    "STORAGE_COMMITMENT_PUSH_INSTANCE",
    "STORAGE_SOP_CLASSES",
    "STORAGE_TRANSFER_SYNTAXES",
    "STUDY_ROOT_QR_FIND",
    "STUDY_ROOT_QR_GET",
    "STUDY_ROOT_QR_MOVE",
    "TABLE2_STORAGE",
    "TABLE4_TRANSFER_SYNTAXES",
    "TRANSFER_SYNTAXES",
    "VERIFICATION",
    "SOPClass",
    "TransferSyntax",
    "is_valid_uid",
    "name_of",
    "new_uid",
]


@dataclass(frozen=True, slots=True)
class SOPClass:
    """A SOP class: the abstract syntax of a presentation context (PS3.4, PS3.6 Table A-1)."""

    uid: str
    name: str
    retired: bool = False


@dataclass(frozen=True, slots=True)
class TransferSyntax:
    """How a data set is encoded (PS3.5 10).

    ``compressed`` means the Pixel Data is encapsulated (PS3.5 A.4), which is
    what matters to a store that keeps bytes as received; ``deflated`` means
    the whole data set is deflated after encoding (PS3.5 A.5).
    """

    uid: str
    name: str
    explicit_vr: bool
    little_endian: bool
    compressed: bool
    deflated: bool
    retired: bool = False


# --- Well-known UIDs -------------------------------------------------------

APPLICATION_CONTEXT_NAME: Final = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1
VERIFICATION: Final = "1.2.840.10008.1.1"  # PS3.4 A
# Conformance statement 3.1.1.4: our implementation identification (PS3.7 D.3.3.2).
IMPLEMENTATION_CLASS_UID: Final = "1.2.826.0.1.3680043.2.914"
IMPLEMENTATION_VERSION_NAME: Final = "StellarPACS_1.3"
# PS3.4 J.3.  The 1.3 conformance statement (3.1.3.3) prints 1.2.840.10008.5.1.20.1,
# a typo for this UID: that one is not assigned by PS3.6.
STORAGE_COMMITMENT_PUSH: Final = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_PUSH_INSTANCE: Final = "1.2.840.10008.1.20.1.1"  # well-known instance
MPPS: Final = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step, PS3.4 F

# Query/Retrieve information models, PS3.4 C.6.  Patient/Study Only is retired
# but stays: conformance statement Table 3 lists it.
PATIENT_ROOT_QR_FIND: Final = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_QR_MOVE: Final = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_QR_GET: Final = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_QR_FIND: Final = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_QR_MOVE: Final = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_QR_GET: Final = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_QR_FIND: Final = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_STUDY_ONLY_QR_MOVE: Final = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_QR_GET: Final = "1.2.840.10008.5.1.4.1.2.3.3"

QR_FIND_MODELS: Final = (PATIENT_ROOT_QR_FIND, STUDY_ROOT_QR_FIND, PATIENT_STUDY_ONLY_QR_FIND)
QR_MOVE_MODELS: Final = (PATIENT_ROOT_QR_MOVE, STUDY_ROOT_QR_MOVE, PATIENT_STUDY_ONLY_QR_MOVE)
QR_GET_MODELS: Final = (PATIENT_ROOT_QR_GET, STUDY_ROOT_QR_GET, PATIENT_STUDY_ONLY_QR_GET)

# --- Transfer syntaxes, PS3.5 10 and PS3.6 Table A-1 -------------------------

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.98"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
JPEG_BASELINE: Final = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED: Final = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS: Final = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1: Final = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS: Final = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS: Final = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS: Final = "1.2.840.10008.1.2.4.90"
JPEG_2000: Final = "1.2.840.10008.1.2.4.91"
JPEG_2000_MC_LOSSLESS: Final = "1.2.840.10008.1.2.4.92"
JPEG_2000_MC: Final = "1.2.840.10008.1.2.4.93"
HTJ2K_LOSSLESS: Final = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL: Final = "1.2.840.10008.1.2.4.202"
HTJ2K: Final = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS: Final = "1.2.840.10008.1.2.5"


def _native(
    uid: str,
    name: str,
    *,
    explicit: bool = True,
    little: bool = True,
    deflated: bool = False,
    retired: bool = False,
) -> TransferSyntax:
    return TransferSyntax(uid, name, explicit, little, False, deflated, retired)


def _encapsulated(uid: str, name: str) -> TransferSyntax:
    return TransferSyntax(uid, name, True, True, True, False)


_NATIVE_TS: Final = (
    _native(IMPLICIT_VR_LITTLE_ENDIAN, "Implicit VR Little Endian", explicit=False),
    _native(EXPLICIT_VR_LITTLE_ENDIAN, "Explicit VR Little Endian"),
    _native(
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "Deflated Explicit VR Little Endian", deflated=True
    ),
    _native(EXPLICIT_VR_BIG_ENDIAN, "Explicit VR Big Endian", little=False, retired=True),
    # JPIP (PS3.5 A.6): the pixel data stays on a JPIP server, nothing is encapsulated.
    _native("1.2.840.10008.1.2.4.94", "JPIP Referenced"),
    _native("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", deflated=True),
    _native("1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced"),
    _native("1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", deflated=True),
)

_LOSSLESS_TS: Final = (
    _encapsulated(
        ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
        "Encapsulated Uncompressed Explicit VR Little Endian",
    ),
    _encapsulated(
        JPEG_LOSSLESS_SV1,
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
    ),
    _encapsulated(JPEG_LOSSLESS, "JPEG Lossless, Non-Hierarchical (Process 14)"),
    _encapsulated(JPEG_LS_LOSSLESS, "JPEG-LS Lossless Image Compression"),
    _encapsulated(JPEG_2000_LOSSLESS, "JPEG 2000 Image Compression (Lossless Only)"),
    _encapsulated(
        JPEG_2000_MC_LOSSLESS, "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"
    ),
    _encapsulated(HTJ2K_LOSSLESS, "High-Throughput JPEG 2000 Image Compression (Lossless Only)"),
    _encapsulated(
        HTJ2K_LOSSLESS_RPCL,
        "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)",
    ),
    _encapsulated(RLE_LOSSLESS, "RLE Lossless"),
)

_LOSSY_TS: Final = (
    _encapsulated(JPEG_BASELINE, "JPEG Baseline (Process 1)"),
    _encapsulated(JPEG_EXTENDED, "JPEG Extended (Process 2 and 4)"),
    _encapsulated(JPEG_LS_NEAR_LOSSLESS, "JPEG-LS Lossy (Near-Lossless) Image Compression"),
    _encapsulated(JPEG_2000, "JPEG 2000 Image Compression"),
    _encapsulated(JPEG_2000_MC, "JPEG 2000 Part 2 Multi-component Image Compression"),
    _encapsulated(HTJ2K, "High-Throughput JPEG 2000 Image Compression"),
)

# PS3.5 A.4.5 to A.4.7 (MPEG-2, H.264, H.265); the ".1" UIDs are the fragmentable variants.
_VIDEO_TS: Final = (
    _encapsulated("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
    _encapsulated("1.2.840.10008.1.2.4.100.1", "Fragmentable MPEG2 Main Profile / Main Level"),
    _encapsulated("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level"),
    _encapsulated("1.2.840.10008.1.2.4.101.1", "Fragmentable MPEG2 Main Profile / High Level"),
    _encapsulated("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1"),
    _encapsulated(
        "1.2.840.10008.1.2.4.102.1", "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1"
    ),
    _encapsulated(
        "1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1"
    ),
    _encapsulated(
        "1.2.840.10008.1.2.4.103.1",
        "Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
    ),
    _encapsulated(
        "1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"
    ),
    _encapsulated(
        "1.2.840.10008.1.2.4.104.1",
        "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video",
    ),
    _encapsulated(
        "1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"
    ),
    _encapsulated(
        "1.2.840.10008.1.2.4.105.1",
        "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video",
    ),
    _encapsulated("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"),
    _encapsulated(
        "1.2.840.10008.1.2.4.106.1", "Fragmentable MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"
    ),
    _encapsulated("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1"),
    _encapsulated("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1"),
)

_ALL_TS: Final = _NATIVE_TS + _LOSSLESS_TS + _LOSSY_TS + _VIDEO_TS

TRANSFER_SYNTAXES: Final[Mapping[str, TransferSyntax]] = MappingProxyType(
    {ts.uid: ts for ts in _ALL_TS}
)

# Conformance statement Table 4: what 1.3 offered and accepted for storage.
TABLE4_TRANSFER_SYNTAXES: Final = (
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    RLE_LOSSLESS,
)

# Accepted for C-STORE by default, in the default order of preference: the
# acceptor picks the first of these that the proposer offers.  Lossless
# encapsulated syntaxes first: a modality that offers its images compressed
# without loss keeps them so (no decompression on a device that may not be able
# to, e.g. dcmtk's storescu cannot decode RLE), and the archive stores fewer
# bytes.  Then uncompressed (Explicit before Implicit: it keeps the VRs of
# private elements), then the lossy ones, so that the peer is never pushed into
# a lossy re-encoding while it offers anything else.  JPIP is left out: its
# pixel data lives on a server we cannot vouch for.
STORAGE_TRANSFER_SYNTAXES: Final = (
    *(
        ts.uid
        for ts in _LOSSLESS_TS
        if ts.uid != ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN
    ),
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LITTLE_ENDIAN,
    *(ts.uid for ts in _LOSSY_TS),
    *(ts.uid for ts in _VIDEO_TS),
    EXPLICIT_VR_BIG_ENDIAN,  # retired (PS3.5 A.3); last resort for old modalities
)

# --- Storage SOP classes ------------------------------------------------------
# Generated from PS3.6 Table A-1 (edition 2024c), see the module docstring.
# Storage Service Class, PS3.4 Table B.5-1.
_STORAGE_ROWS: Final = (
    ("1.2.840.10008.5.1.4.1.1.1", "Computed Radiography Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.1", "Digital X-Ray Image Storage - For Presentation"),
    ("1.2.840.10008.5.1.4.1.1.1.1.1", "Digital X-Ray Image Storage - For Processing"),
    ("1.2.840.10008.5.1.4.1.1.1.2", "Digital Mammography X-Ray Image Storage - For Presentation"),
    ("1.2.840.10008.5.1.4.1.1.1.2.1", "Digital Mammography X-Ray Image Storage - For Processing"),
    ("1.2.840.10008.5.1.4.1.1.1.3", "Digital Intra-Oral X-Ray Image Storage - For Presentation"),
    ("1.2.840.10008.5.1.4.1.1.1.3.1", "Digital Intra-Oral X-Ray Image Storage - For Processing"),
    ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.2.2", "Legacy Converted Enhanced CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.3.1", "Ultrasound Multi-frame Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.4", "MR Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.4.1", "Enhanced MR Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.4.2", "MR Spectroscopy Storage"),
    ("1.2.840.10008.5.1.4.1.1.4.3", "Enhanced MR Color Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.4.4", "Legacy Converted Enhanced MR Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.6.2", "Enhanced US Volume Storage"),
    ("1.2.840.10008.5.1.4.1.1.6.3", "Photoacoustic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7.1", "Multi-frame Single Bit Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7.2", "Multi-frame Grayscale Byte Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7.3", "Multi-frame Grayscale Word Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7.4", "Multi-frame True Color Secondary Capture Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.1.1", "12-lead ECG Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.1.2", "General ECG Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.1.3", "Ambulatory ECG Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.1.4", "General 32-bit ECG Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.2.1", "Hemodynamic Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.3.1", "Cardiac Electrophysiology Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.4.1", "Basic Voice Audio Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.4.2", "General Audio Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.5.1", "Arterial Pulse Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.6.1", "Respiratory Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.6.2", "Multi-channel Respiratory Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.7.1", "Routine Scalp Electroencephalogram Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.7.2", "Electromyogram Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.7.3", "Electrooculogram Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.7.4", "Sleep Electroencephalogram Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.8.1", "Body Position Waveform Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.1", "Grayscale Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.2", "Color Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.3", "Pseudo-Color Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.4", "Blending Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.5", "XA/XRF Grayscale Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.6", "Grayscale Planar MPR Volumetric Presentation State Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.11.7",
        "Compositing Planar MPR Volumetric Presentation State Storage",
    ),
    ("1.2.840.10008.5.1.4.1.1.11.8", "Advanced Blending Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.11.9", "Volume Rendering Volumetric Presentation State Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.11.10",
        "Segmented Volume Rendering Volumetric Presentation State Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.11.11",
        "Multiple Volume Rendering Volumetric Presentation State Storage",
    ),
    ("1.2.840.10008.5.1.4.1.1.11.12", "Variable Modality LUT Softcopy Presentation State Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.1", "X-Ray Angiographic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.1.1", "Enhanced XA Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.2", "X-Ray Radiofluoroscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.2.1", "Enhanced XRF Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.13.1.1", "X-Ray 3D Angiographic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.13.1.2", "X-Ray 3D Craniofacial Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.13.1.3", "Breast Tomosynthesis Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.13.1.4", "Breast Projection X-Ray Image Storage - For Presentation"),
    ("1.2.840.10008.5.1.4.1.1.13.1.5", "Breast Projection X-Ray Image Storage - For Processing"),
    (
        "1.2.840.10008.5.1.4.1.1.14.1",
        "Intravascular Optical Coherence Tomography Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.14.2",
        "Intravascular Optical Coherence Tomography Image Storage - For Processing",
    ),
    ("1.2.840.10008.5.1.4.1.1.20", "Nuclear Medicine Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.30", "Parametric Map Storage"),
    ("1.2.840.10008.5.1.4.1.1.66", "Raw Data Storage"),
    ("1.2.840.10008.5.1.4.1.1.66.1", "Spatial Registration Storage"),
    ("1.2.840.10008.5.1.4.1.1.66.2", "Spatial Fiducials Storage"),
    ("1.2.840.10008.5.1.4.1.1.66.3", "Deformable Spatial Registration Storage"),
    ("1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage"),
    ("1.2.840.10008.5.1.4.1.1.66.5", "Surface Segmentation Storage"),
    ("1.2.840.10008.5.1.4.1.1.66.6", "Tractography Results Storage"),
    ("1.2.840.10008.5.1.4.1.1.67", "Real World Value Mapping Storage"),
    ("1.2.840.10008.5.1.4.1.1.68.1", "Surface Scan Mesh Storage"),
    ("1.2.840.10008.5.1.4.1.1.68.2", "Surface Scan Point Cloud Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.1", "VL Endoscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.1.1", "Video Endoscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.2", "VL Microscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.2.1", "Video Microscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.3", "VL Slide-Coordinates Microscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.4.1", "Video Photographic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.5.1", "Ophthalmic Photography 8 Bit Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.5.2", "Ophthalmic Photography 16 Bit Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.5.3", "Stereometric Relationship Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.5.4", "Ophthalmic Tomography Image Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.77.1.5.5",
        "Wide Field Ophthalmic Photography Stereographic Projection Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.77.1.5.6",
        "Wide Field Ophthalmic Photography 3D Coordinates Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.77.1.5.7",
        "Ophthalmic Optical Coherence Tomography En Face Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.77.1.5.8",
        "Ophthalmic Optical Coherence Tomography B-scan Volume Analysis Storage",
    ),
    ("1.2.840.10008.5.1.4.1.1.77.1.6", "VL Whole Slide Microscopy Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.7", "Dermoscopic Photography Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.8", "Confocal Microscopy Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.9", "Confocal Microscopy Tiled Pyramidal Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.1", "Lensometry Measurements Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.2", "Autorefraction Measurements Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.3", "Keratometry Measurements Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.4", "Subjective Refraction Measurements Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.5", "Visual Acuity Measurements Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.6", "Spectacle Prescription Report Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.7", "Ophthalmic Axial Measurements Storage"),
    ("1.2.840.10008.5.1.4.1.1.78.8", "Intraocular Lens Calculations Storage"),
    ("1.2.840.10008.5.1.4.1.1.79.1", "Macular Grid Thickness and Volume Report Storage"),
    (
        "1.2.840.10008.5.1.4.1.1.80.1",
        "Ophthalmic Visual Field Static Perimetry Measurements Storage",
    ),
    ("1.2.840.10008.5.1.4.1.1.81.1", "Ophthalmic Thickness Map Storage"),
    ("1.2.840.10008.5.1.4.1.1.82.1", "Corneal Topography Map Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive 3D SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.35", "Extensible SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.40", "Procedure Log Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.50", "Mammography CAD SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection Document Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.65", "Chest CAD SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.67", "X-Ray Radiation Dose SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.68", "Radiopharmaceutical Radiation Dose SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.69", "Colon CAD SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.70", "Implantation Plan SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.71", "Acquisition Context SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.72", "Simplified Adult Echo SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.73", "Patient Radiation Dose SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.74", "Planned Imaging Agent Administration SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.75", "Performed Imaging Agent Administration SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.76", "Enhanced X-Ray Radiation Dose SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.88.77", "Waveform Annotation SR Storage"),
    ("1.2.840.10008.5.1.4.1.1.90.1", "Content Assessment Results Storage"),
    ("1.2.840.10008.5.1.4.1.1.91.1", "Microscopy Bulk Simple Annotations Storage"),
    ("1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF Storage"),
    ("1.2.840.10008.5.1.4.1.1.104.2", "Encapsulated CDA Storage"),
    ("1.2.840.10008.5.1.4.1.1.104.3", "Encapsulated STL Storage"),
    ("1.2.840.10008.5.1.4.1.1.104.4", "Encapsulated OBJ Storage"),
    ("1.2.840.10008.5.1.4.1.1.104.5", "Encapsulated MTL Storage"),
    ("1.2.840.10008.5.1.4.1.1.128", "Positron Emission Tomography Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.128.1", "Legacy Converted Enhanced PET Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.130", "Enhanced PET Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.131", "Basic Structured Display Storage"),
    ("1.2.840.10008.5.1.4.1.1.200.2", "CT Performed Procedure Protocol Storage"),
    ("1.2.840.10008.5.1.4.1.1.200.8", "XA Performed Procedure Protocol Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.1", "RT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT Dose Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.4", "RT Beams Treatment Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT Plan Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.6", "RT Brachy Treatment Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.7", "RT Treatment Summary Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.8", "RT Ion Plan Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.9", "RT Ion Beams Treatment Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.10", "RT Physician Intent Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.11", "RT Segment Annotation Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.12", "RT Radiation Set Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.13", "C-Arm Photon-Electron Radiation Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.14", "Tomotherapeutic Radiation Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.15", "Robotic-Arm Radiation Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.16", "RT Radiation Record Set Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.17", "RT Radiation Salvage Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.18", "Tomotherapeutic Radiation Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.19", "C-Arm Photon-Electron Radiation Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.20", "Robotic Radiation Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.21", "RT Radiation Set Delivery Instruction Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.22", "RT Treatment Preparation Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.23", "Enhanced RT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.24", "Enhanced Continuous RT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.25", "RT Patient Position Acquisition Instruction Storage"),
    ("1.2.840.10008.5.1.4.1.1.501.1", "DICOS CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.501.2.1", "DICOS Digital X-Ray Image Storage - For Presentation"),
    ("1.2.840.10008.5.1.4.1.1.501.2.2", "DICOS Digital X-Ray Image Storage - For Processing"),
    ("1.2.840.10008.5.1.4.1.1.501.3", "DICOS Threat Detection Report Storage"),
    ("1.2.840.10008.5.1.4.1.1.501.4", "DICOS 2D AIT Storage"),
    ("1.2.840.10008.5.1.4.1.1.501.5", "DICOS 3D AIT Storage"),
    ("1.2.840.10008.5.1.4.1.1.501.6", "DICOS Quadrupole Resonance (QR) Storage"),
    ("1.2.840.10008.5.1.4.1.1.601.1", "Eddy Current Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.601.2", "Eddy Current Multi-frame Image Storage"),
    ("1.2.840.10008.5.1.4.34.7", "RT Beams Delivery Instruction Storage"),
    ("1.2.840.10008.5.1.4.34.10", "RT Brachy Application Setup Delivery Instruction Storage"),
)

# Rows of Table B.5-1 retired since; kept because Table 2 of our conformance
# statement lists six of them and old archives still hold such instances.  The
# Stored Print and Hardcopy classes were Table B.5-1 rows before they retired.
_RETIRED_STORAGE_ROWS: Final = (
    ("1.2.840.10008.5.1.1.27", "Stored Print Storage SOP Class"),
    ("1.2.840.10008.5.1.1.29", "Hardcopy Grayscale Image Storage SOP Class"),
    ("1.2.840.10008.5.1.1.30", "Hardcopy Color Image Storage SOP Class"),
    ("1.2.840.10008.5.1.4.1.1.3", "Ultrasound Multi-frame Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.5", "Nuclear Medicine Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.6", "Ultrasound Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.8", "Standalone Overlay Storage"),
    ("1.2.840.10008.5.1.4.1.1.9", "Standalone Curve Storage"),
    ("1.2.840.10008.5.1.4.1.1.9.1", "Waveform Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.10", "Standalone Modality LUT Storage"),
    ("1.2.840.10008.5.1.4.1.1.11", "Standalone VOI LUT Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.3", "X-Ray Angiographic Bi-Plane Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1", "VL Image Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.77.2", "VL Multi-frame Image Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.88.1", "Text SR Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.88.2", "Audio SR Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.88.3", "Detail SR Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.88.4", "Comprehensive SR Storage - Trial"),
    ("1.2.840.10008.5.1.4.1.1.129", "Standalone PET Curve Storage"),
    ("1.2.840.10008.5.1.4.34.1", "RT Beams Delivery Instruction Storage - Trial"),
)

# Non-Patient Object Storage Service Class, PS3.4 GG.3.
_NON_PATIENT_STORAGE_ROWS: Final = (
    ("1.2.840.10008.5.1.4.1.1.200.1", "CT Defined Procedure Protocol Storage"),
    ("1.2.840.10008.5.1.4.1.1.200.3", "Protocol Approval Storage"),
    ("1.2.840.10008.5.1.4.1.1.200.7", "XA Defined Procedure Protocol Storage"),
    ("1.2.840.10008.5.1.4.1.1.201.1", "Inventory Storage"),
    ("1.2.840.10008.5.1.4.38.1", "Hanging Protocol Storage"),
    ("1.2.840.10008.5.1.4.39.1", "Color Palette Storage"),
    ("1.2.840.10008.5.1.4.43.1", "Generic Implant Template Storage"),
    ("1.2.840.10008.5.1.4.44.1", "Implant Assembly Template Storage"),
    ("1.2.840.10008.5.1.4.45.1", "Implant Template Group Storage"),
)


def _uid_key(uid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in uid.split("."))


def _sop_classes(rows: tuple[tuple[str, str], ...], *, retired: bool) -> tuple[SOPClass, ...]:
    return tuple(SOPClass(uid, name, retired) for uid, name in rows)


_OTHER_SOP_CLASSES: Final = (
    SOPClass(VERIFICATION, "Verification SOP Class"),
    SOPClass(STORAGE_COMMITMENT_PUSH, "Storage Commitment Push Model SOP Class"),
    SOPClass(MPPS, "Modality Performed Procedure Step SOP Class"),
    SOPClass(PATIENT_ROOT_QR_FIND, "Patient Root Query/Retrieve Information Model - FIND"),
    SOPClass(PATIENT_ROOT_QR_MOVE, "Patient Root Query/Retrieve Information Model - MOVE"),
    SOPClass(PATIENT_ROOT_QR_GET, "Patient Root Query/Retrieve Information Model - GET"),
    SOPClass(STUDY_ROOT_QR_FIND, "Study Root Query/Retrieve Information Model - FIND"),
    SOPClass(STUDY_ROOT_QR_MOVE, "Study Root Query/Retrieve Information Model - MOVE"),
    SOPClass(STUDY_ROOT_QR_GET, "Study Root Query/Retrieve Information Model - GET"),
    SOPClass(
        PATIENT_STUDY_ONLY_QR_FIND,
        "Patient/Study Only Query/Retrieve Information Model - FIND",
        retired=True,
    ),
    SOPClass(
        PATIENT_STUDY_ONLY_QR_MOVE,
        "Patient/Study Only Query/Retrieve Information Model - MOVE",
        retired=True,
    ),
    SOPClass(
        PATIENT_STUDY_ONLY_QR_GET,
        "Patient/Study Only Query/Retrieve Information Model - GET",
        retired=True,
    ),
)

_ALL_SOP_CLASSES: Final = (
    _sop_classes(_STORAGE_ROWS, retired=False)
    + _sop_classes(_RETIRED_STORAGE_ROWS, retired=True)
    + _sop_classes(_NON_PATIENT_STORAGE_ROWS, retired=False)
    + _OTHER_SOP_CLASSES
)

SOP_CLASSES: Final[Mapping[str, SOPClass]] = MappingProxyType(
    {sop.uid: sop for sop in _ALL_SOP_CLASSES}
)

# Retired classes share names with their successors (e.g. Ultrasound Image
# Storage), so a log line marks them.
SOP_CLASS_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {sop.uid: sop.name + (" (Retired)" if sop.retired else "") for sop in _ALL_SOP_CLASSES}
)

# Storage SOP classes accepted by default: Table B.5-1 and its retired rows, in
# UID order.  Non-patient objects (PS3.4 GG) have no Patient/Study/Series to
# index, so they are offered separately and not accepted unless configured.
STORAGE_SOP_CLASSES: Final = tuple(
    sorted((uid for uid, _ in _STORAGE_ROWS + _RETIRED_STORAGE_ROWS), key=_uid_key)
)
NON_PATIENT_STORAGE_SOP_CLASSES: Final = tuple(uid for uid, _ in _NON_PATIENT_STORAGE_ROWS)

# Conformance statement 1.3, Table 2, with the statement's own names.
_TABLE2_ROWS: Final = (
    ("1.2.840.10008.5.1.4.1.1.1", "CR Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.4", "MR Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.20", "NM Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.6.1", "US Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.3.1", "US Multi Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.7", "SC Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.1", "RT Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT Dose Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.4", "RT Treatment Record Storage"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT Plan Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.1", "X-Ray Angiographic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.2", "X-Ray Radiofluoroscopic Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.12.3", "X-Ray Angiographic Bi-Plane Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.8", "Standalone Overlay Storage"),
    ("1.2.840.10008.5.1.4.1.1.9", "Standalone Curve Storage"),
    ("1.2.840.10008.5.1.4.1.1.10", "Standalone Modality LUT Storage"),
    ("1.2.840.10008.5.1.4.1.1.11", "Standalone VOI LUT Storage"),
    ("1.2.840.10008.5.1.4.1.1.128", "Positron Emission Tomography (PET) Storage"),
    ("1.2.840.10008.5.1.4.1.1.129", "PET Curve Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.1", "Digital Xray (DX) Presented Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.1.1", "Digital Xray (DX) Processed Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.2", "Digital Mammography (MG) Presented Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.2.1", "Digital Mammography (MG) Processed Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.3", "Digital Intra-Oral (IO) Presented Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.1.3.1", "Digital Intra-Oral (IO) Processed Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.1", "Visible Light Endoscopy (ES) Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.2", "Visible Light Microscopy (GM) Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.3", "Visible Light Slide Microscopy (SM) Image Storage"),
    ("1.2.840.10008.5.1.4.1.1.77.1.4", "Visible Light Photography (XC) Image Storage"),
)

TABLE2_STORAGE: Final = tuple(
    SOPClass(uid, name, SOP_CLASSES[uid].retired) for uid, name in _TABLE2_ROWS
)

# --- Names for logs -------------------------------------------------------------

_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        APPLICATION_CONTEXT_NAME: "DICOM Application Context Name",
        STORAGE_COMMITMENT_PUSH_INSTANCE: "Storage Commitment Push Model SOP Instance",
        IMPLEMENTATION_CLASS_UID: "StellarPACS Implementation Class",
        **{ts.uid: ts.name + (" (Retired)" if ts.retired else "") for ts in _ALL_TS},
        **SOP_CLASS_NAMES,
    }
)

# PS3.5 9.1: dot-separated decimal components, no leading zero except "0" itself.
_UID_PATTERN: Final = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def name_of(uid: str) -> str:
    """The standard name of a UID we know, for logs; any other UID comes back unchanged."""
    return _NAMES.get(uid, uid)


def is_valid_uid(uid: str) -> bool:
    """Whether ``uid`` is a syntactically valid UID (PS3.5 9.1): at most 64 characters."""
    return len(uid) <= 64 and _UID_PATTERN.fullmatch(uid) is not None


def new_uid() -> str:
    """A fresh UID under the UUID-derived root 2.25 (PS3.5 B.2): no registered root needed."""
    return f"2.25.{uuid.uuid4().int}"
