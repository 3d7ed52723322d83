"""The value checks of configuration keys: each takes the key and a value, returns it normalised.

One rule per kind of value (an AE title, a port range, a PDU length, a
transfer syntax list...), raising :class:`KeyProblem`, a
:class:`~stellarpacs.errors.ConfigError` that names the key.  The same checks
serve the TOML loader, the CLI overrides and code that builds a
:class:`~stellarpacs.config.Config` itself, so every route in is held to the
same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from stellarpacs import uids
from stellarpacs.errors import ConfigError

__all__ = [
    "AE_MAX",
    "LOG_LEVELS",
    "MAX_PDU_LENGTH",
    "MIN_PDU_LENGTH",
    "KeyProblem",
    "check_ae_title",
    "check_host",
    "check_log_level",
    "check_pdu_length",
    "check_sop_classes",
    "check_transfer_syntaxes",
    "in_range",
    "no_duplicates",
    "non_negative_seconds",
    "positive_seconds",
]

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
# PS3.8 D.1 allows any maximum length; below dcmtk's 4096 floor PDU headers
# dominate and some peers refuse to talk, so we refuse it up front.
MIN_PDU_LENGTH: Final = 4096
MAX_PDU_LENGTH: Final = 0xFFFFFFFF  # the sub-item field is 32 bits (PS3.8 D.1.1)
AE_MAX: Final = 16  # PS3.5 6.2, AE value representation


class KeyProblem(ConfigError):
    """A ConfigError about one key; load_config uses ``key`` to say where it came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"'{key}' {message}")
        self.key = key


def check_ae_title(key: str, value: str) -> str:
    """PS3.5 6.2 (AE): 16 characters of the default repertoire, no backslash or controls.

    Leading and trailing spaces are not significant, so they are dropped here.
    """
    title = value.strip(" ")
    if not title:
        raise KeyProblem(key, "must not be empty")
    if len(title) > AE_MAX:
        raise KeyProblem(key, f"must be at most {AE_MAX} characters, got {len(title)}: {title!r}")
    if not title.isascii():
        raise KeyProblem(key, f"must be ASCII, got {title!r}")
    if "\\" in title or any(ord(c) < 0x20 or ord(c) == 0x7F for c in title):
        raise KeyProblem(key, f"must not contain a backslash or control character: {title!r}")
    return title


def check_host(key: str, value: str) -> str:
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise KeyProblem(key, f"must be a host name or address without spaces, got {value!r}")
    return value


def in_range(low: int, high: int) -> Callable[[str, int], int]:
    def check(key: str, value: int) -> int:
        if not low <= value <= high:
            raise KeyProblem(key, f"must be between {low} and {high}, got {value}")
        return value

    return check


def check_pdu_length(key: str, value: int) -> int:
    if value != 0 and not MIN_PDU_LENGTH <= value <= MAX_PDU_LENGTH:
        raise KeyProblem(
            key, f"must be 0 (no limit) or {MIN_PDU_LENGTH} to {MAX_PDU_LENGTH}, got {value}"
        )
    return value


def check_log_level(key: str, value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise KeyProblem(key, f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.upper()


def positive_seconds(key: str, value: float) -> float:
    if value <= 0:
        raise KeyProblem(key, f"must be more than 0 seconds, got {value}")
    return value


def non_negative_seconds(key: str, value: float) -> float:
    if value < 0:
        raise KeyProblem(key, f"must be 0 (no limit) or more seconds, got {value}")
    return value


def no_duplicates(key: str, values: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for uid in values:
        if uid in seen:
            raise KeyProblem(key, f"lists {uid!r} twice")
        seen.add(uid)


def check_transfer_syntaxes(key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise KeyProblem(key, "must list at least one transfer syntax")
    for uid in values:
        if uid not in uids.TRANSFER_SYNTAXES:
            raise KeyProblem(key, f"has an unknown transfer syntax UID {uid!r}")
    no_duplicates(key, values)
    return values


def check_sop_classes(key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    for uid in values:
        if not uids.is_valid_uid(uid):
            raise KeyProblem(key, f"has an invalid UID {uid!r} (PS3.5 9.1)")
    no_duplicates(key, values)
    return values


def one_of(*choices: str) -> Callable[[str, str], str]:
    def check(key: str, value: str) -> str:
        if value not in choices:
            raise KeyProblem(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check
