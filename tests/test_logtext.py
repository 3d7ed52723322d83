"""Peer text in log lines: one line of printable ASCII, bounded (issue 12, defect 7)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellarpacs.logtext import MAX_LENGTH, printable

PRINTABLE_ASCII = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))
ANY_VALUE = st.text() | st.binary() | st.integers() | st.none()
LIMITS = st.integers(8, 2 * MAX_LENGTH)


def is_one_printable_line(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


@given(ANY_VALUE, LIMITS)
def test_output_is_one_bounded_line_of_printable_ascii(value: object, limit: int) -> None:
    out = printable(value, limit)
    assert is_one_printable_line(out)  # no CR, LF, ESC, DEL, C1 or non-ASCII left
    assert len(out) <= limit


@given(st.text(min_size=1))
def test_the_default_bound(value: str) -> None:
    assert len(printable(value * 1000)) <= MAX_LENGTH


@given(PRINTABLE_ASCII.filter(lambda t: len(t) <= MAX_LENGTH))
def test_printable_ascii_passes_unchanged(text: str) -> None:
    assert printable(text) == text


@given(PRINTABLE_ASCII, PRINTABLE_ASCII)
def test_distinct_printable_inputs_stay_distinct(a: str, b: str) -> None:
    if a != b and max(len(a), len(b)) <= MAX_LENGTH:
        assert printable(a) != printable(b)


@given(st.text(), LIMITS)
def test_a_cut_keeps_a_prefix_and_splits_no_escape(value: str, limit: int) -> None:
    full = printable(value, 10**6)
    out = printable(value, limit)
    if out != full:
        kept = out.removesuffix("...")
        assert len(kept) == len(out) - 3
        # What is kept renders a prefix of the value whole: no escape was cut in half.
        assert any(printable(value[:k], 10**6) == kept for k in range(len(value) + 1))


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("EVIL\r\nFAKE\x1b[31m", "EVIL\\r\\nFAKE\\x1b[31m"),
        ("tab\there", "tab\\there"),
        ("\x00\x7f\x85\u2028\u202e", "\\x00\\x7f\\x85\\u2028\\u202e"),
        ("caf\xe9 \U0001f600", "caf\\xe9 \\U0001f600"),
        (b"1.2.\x1b\xff", "1.2.\\x1b\\xff"),
        (ValueError("bad UID '1.2\n'"), "bad UID '1.2\\n'"),
        (12, "12"),
        (string.printable.strip(), string.printable.strip()),
    ],
)
def test_examples(raw: object, shown: str) -> None:
    assert printable(raw) == shown


def test_long_values_are_cut() -> None:
    assert printable("A" * 100, 20) == "A" * 17 + "..."
    assert printable("\n" * 100, 20) == "\\n" * 8 + "..."
    assert printable("ab\x1b" * 10, 12) == "ab\\x1bab..."
    with pytest.raises(ValueError):
        printable("x", 3)
