"""Status categories and descriptions (PS3.7 Annex C, PS3.4 B.2.3 and C.4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stellarpacs.dimse.status import ServiceClass, Status, StatusCategory, category, describe

S, W, F, C, P = (
    StatusCategory.SUCCESS,
    StatusCategory.WARNING,
    StatusCategory.FAILURE,
    StatusCategory.CANCEL,
    StatusCategory.PENDING,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, S),
        (0x0001, W),
        (0x0002, F),
        (0x0105, F),
        (0x0106, F),
        (0x0107, W),
        (0x0110, F),
        (0x0115, F),
        (0x0116, W),
        (0x0117, F),
        (0x0122, F),
        (0x0213, F),
        (0xA6FF, F),
        (0xA700, F),
        (0xA7FF, F),
        (0xA900, F),
        (0xAFFF, F),
        (0xB000, W),
        (0xB006, W),
        (0xB007, W),
        (0xBFFF, W),
        (0xC000, F),
        (0xCFFF, F),
        (0xFDFF, F),
        (0xFE00, C),
        (0xFE01, F),
        (0xFEFF, F),
        (0xFF00, P),
        (0xFF01, P),
        (0xFF02, F),
        (0xFFFF, F),
    ],
    ids=lambda value: f"{value:04X}" if isinstance(value, int) else value.value,
)
def test_category_boundaries(status: int, expected: StatusCategory) -> None:
    assert category(status) is expected


@settings(max_examples=200)
@given(st.integers(0xB000, 0xBFFF))
def test_every_bxxx_is_a_warning(status: int) -> None:
    assert category(status) is StatusCategory.WARNING


@settings(max_examples=200)
@given(st.integers(0, 0xFFFF))
def test_only_the_documented_codes_are_not_failures(status: int) -> None:
    not_failure = {0x0000, 0x0001, 0x0107, 0x0116, 0xFE00, 0xFF00, 0xFF01}
    is_failure = status not in not_failure and not 0xB000 <= status <= 0xBFFF
    assert (category(status) is StatusCategory.FAILURE) == is_failure


def test_named_statuses_have_the_standard_values() -> None:
    expected = {
        "SUCCESS": 0x0000,
        "PROCESSING_FAILURE": 0x0110,
        "DUPLICATE_SOP_INSTANCE": 0x0111,
        "NO_SUCH_OBJECT_INSTANCE": 0x0112,
        "INVALID_OBJECT_INSTANCE": 0x0117,
        "CLASS_INSTANCE_CONFLICT": 0x0119,
        "SOP_CLASS_NOT_SUPPORTED": 0x0122,
        "INVALID_ATTRIBUTE_VALUE": 0x0106,
        "UNRECOGNIZED_OPERATION": 0x0211,
        "MISTYPED_ARGUMENT": 0x0212,
        "RESOURCE_LIMITATION": 0x0213,
        "OUT_OF_RESOURCES": 0xA700,
        "OUT_OF_RESOURCES_MATCHES": 0xA701,
        "OUT_OF_RESOURCES_SUBOPERATIONS": 0xA702,
        "MOVE_DESTINATION_UNKNOWN": 0xA801,
        "IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS": 0xA900,
        "UNABLE_TO_PROCESS": 0xC000,
        "SUBOPERATIONS_COMPLETE_WITH_FAILURES": 0xB000,
        "ELEMENTS_DISCARDED": 0xB006,
        "DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING": 0xB007,
        "CANCEL": 0xFE00,
        "PENDING": 0xFF00,
        "PENDING_WARNING": 0xFF01,
    }
    assert {name: int(Status[name]) for name in expected} == expected
    assert Status["UNABLE_TO_PROCESS"] is Status["CANNOT_UNDERSTAND"]
    assert category(Status.COERCION_OF_DATA_ELEMENTS) is StatusCategory.WARNING


@pytest.mark.parametrize(
    ("status", "service", "expected"),
    [
        (0x0000, None, "0x0000 success: success"),
        (0x0122, None, "0x0122 failure: SOP class not supported"),
        (0xA7F3, ServiceClass.STORAGE, "0xA7F3 failure: refused: out of resources"),
        (0xA9AA, ServiceClass.STORAGE, "0xA9AA failure: error: data set does not match SOP class"),
        (0xC123, ServiceClass.STORAGE, "0xC123 failure: error: cannot understand"),
        (0xB000, ServiceClass.STORAGE, "0xB000 warning: coercion of data elements"),
        (
            0xB000,
            ServiceClass.MOVE,
            "0xB000 warning: sub-operations complete, one or more failures or warnings",
        ),
        (0xA801, ServiceClass.MOVE, "0xA801 failure: refused: move destination unknown"),
        (0xA801, ServiceClass.GET, "0xA801 failure"),
        (0xFF01, ServiceClass.FIND, "0xFF01 pending: pending: optional keys not supported"),
        (0xFF00, ServiceClass.GET, "0xFF00 pending: pending: sub-operations are continuing"),
        (0x1234, None, "0x1234 failure"),
    ],
)
def test_describe(status: int, service: ServiceClass | None, expected: str) -> None:
    assert describe(status, service) == expected
