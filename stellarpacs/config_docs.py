"""The configuration documented from its own fields: the key table and the commented defaults.

The README's configuration table, the conformance statement's section 6.2
and :data:`DEFAULT_CONFIG_TOML` (a file with every key at its default,
ready to edit) all come from the help text and the defaults that the
fields of :class:`~stellarpacs.config.Config` carry, so they cannot drift
from what the loader accepts.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import Field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from stellarpacs import uids
from stellarpacs.audit.settings import audit_key_rows
from stellarpacs.config import Config
from stellarpacs.config_access import ACCESS_EXAMPLES
from stellarpacs.config_tls import tls_toml_lines

__all__ = ["DEFAULT_CONFIG_TOML", "describe_keys"]

_TOML_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "str": "string",
        "int": "integer",
        "float": "float",
        "bool": "boolean",
        "Path": "string (path)",
        "tuple[str, ...]": "array of UIDs",
        "Mapping[str, RemoteAE]": "table: host (string), port (integer), services (array), "
        "check_host (boolean), require_user_identity (boolean), tls (boolean), tls_ca_file, "
        "tls_certificate, tls_private_key (paths)",
        "TLSConfig": "table",
        "Mapping[str, UserEntry]": "table: passcode_hash (string)",
        "JWTSettings | Mapping[str, object]": "table: public_key (path), issuer, audience, "
        "algorithms (array)",
        "AuditSettings": "table",
    }
)


def _toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _shown_default(f: Field[Any], default: object) -> str:
    shown: str = f.metadata["shown"]
    return shown or _toml_literal(default)


def describe_keys() -> list[tuple[str, str, str, str]]:
    """``(key, TOML type, default, help)`` for every key, in file order (for the README)."""
    defaults = Config()
    rows = []
    for f in fields(Config):
        if f.name == "audit":
            rows += audit_key_rows()
            continue
        key = "remotes.<AE title>" if f.name == "remotes" else f.name
        shown = _shown_default(f, getattr(defaults, f.name))
        rows.append((key, _TOML_TYPES[str(f.type)], shown, f.metadata["help"]))
    return rows


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=98, initial_indent="# ", subsequent_indent="# ")


def _render_field(f: Field[Any], default: Any) -> list[str]:
    lines = _comment(f.metadata["help"])
    if f.name == "transfer_syntax_preference":
        items = [f'    "{uid}",  # {uids.name_of(uid)}' for uid in default]
        return [*lines, f"{f.name} = [", *items, "]"]
    if f.name == "storage_sop_classes":
        return [
            *lines,
            f"# Default: all of {_shown_default(f, default)}. To accept fewer, list them:",
            f'# {f.name} = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"]  # CT, MR',
        ]
    if f.name == "tls":  # commented: a table header would capture the keys below it
        return tls_toml_lines()
    if f.name == "remotes":  # a commented example
        return [*lines, "# [remotes.STORESCP]", '# host = "192.0.2.10"', "# port = 104"]
    if f.name == "audit":
        example = ['# file = "/var/log/stellarpacs/audit.jsonl"', '# syslog = "tls://audit:6514"']
        return [*lines, "# [audit]", *example]
    if f.name in ACCESS_EXAMPLES:
        return [*lines, *ACCESS_EXAMPLES[f.name]]
    return [*lines, f"{f.name} = {_toml_literal(default)}"]


def _render_default_toml() -> str:
    defaults = Config()
    parts = [
        "# StellarPACS configuration (TOML). Every key is optional and shows its default;",
        "# command-line flags override this file.",
    ]
    for f in fields(Config):
        parts += ["", *_render_field(f, getattr(defaults, f.name))]
    return "\n".join(parts) + "\n"


DEFAULT_CONFIG_TOML: Final = _render_default_toml()
