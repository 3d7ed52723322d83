"""Peer-supplied text made safe for one log line.

A peer chooses its AE titles, the UIDs in its commands, its error comments
and, through them, the names of files we write.  Logged raw, a CR or LF lets
it forge log lines and an ESC sequence rewrites a terminal (issue 12, defect
7).  :func:`printable` is wrapped around every such value where it is logged:
printable ASCII passes unchanged (what every well-behaved peer sends, since
AE titles and UIDs are ASCII, PS3.5 6.2), anything else is escaped the way
Python writes it in a string literal, and the result is bounded.

The escaping is for people reading logs, not a reversible encoding: a
backslash is kept as it is, so that ordinary text stays readable.
"""

from __future__ import annotations

__all__ = ["MAX_LENGTH", "printable"]

#: Longest rendering of one value; a UID is at most 64 characters, an AE title 16.
MAX_LENGTH = 512

_ELLIPSIS = "..."
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    """``\\n``, ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, as in a Python literal."""
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, limit: int = MAX_LENGTH) -> str:
    """``value`` as one line of printable ASCII of at most ``limit`` characters.

    Control characters (C0, DEL, C1), line and paragraph separators and every
    other non-ASCII character are escaped; bytes are taken one character per
    byte, so a byte 0x1B shows as ``\\x1b``.  A longer result is cut at a
    character boundary and ends with ``...``.  ``limit`` is at least 8.
    """
    if limit < 8:
        raise ValueError(f"limit {limit} leaves no room for an escape and the ellipsis")
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("latin-1")
    else:
        text = str(value)
    if len(text) <= limit and text.isascii() and text.isprintable():
        return text
    pieces = [c if " " <= c <= "~" else _escape(c) for c in text[:limit]]
    if len(text) <= limit and sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    room, kept = limit - len(_ELLIPSIS), []
    for piece in pieces:  # whole escapes only, so that none is cut in half
        room -= len(piece)
        if room < 0:
            break
        kept.append(piece)
    return "".join(kept) + _ELLIPSIS
