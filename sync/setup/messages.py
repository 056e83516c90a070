"""User-facing messages that stay translatable although `sync/` knows nothing of Flask.

A `Msg` keeps the English text (the catalog's message id, found by `pybabel extract` through
the `N_` keyword) apart from its parameters; the web app translates the text and fills the
parameters in, the command line prints the English.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Msg:
    """A message id with named `%(name)s` parameters."""

    text: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text % dict(self.params) if self.params else self.text


def N_(text: str, **params: Any) -> Msg:  # noqa: N802 (gettext's marker name, for extraction)
    """Mark `text` for translation; it is translated where it is shown."""
    return Msg(text, params)


class SetupError(Exception):
    """A choice was refused; `msg` says why and what to do, `field` where (form field name)."""

    def __init__(self, msg: Msg, field: str = "") -> None:
        super().__init__(str(msg))
        self.msg = msg
        self.field = field
