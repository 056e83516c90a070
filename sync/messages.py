"""Messages kept as ids with parameters, so what is stored is translated where it is shown.

A run recorded while the page was in English reads in Japanese later: the store keeps the
English id (`sync.setup.messages.N_`, or `NP_` for a count's plural forms) and the parameters
as JSON (`to_json`), and the web app translates when it renders (`webapp.i18n.translate`). The
English text (`str(msg)`) is stored beside it for `status` and older readers.

Parameters may be strings, numbers, other messages (translated too) or lists of those (shown
joined, e.g. a run's problems one per kind). Text from elsewhere (a server's error) is a
plain string parameter: it is shown as it came.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync.setup.messages import N_, Msg

__all__ = ["N_", "NP_", "Joined", "Msg", "PluralMsg", "from_json", "joined", "render", "to_json"]

SEPARATOR = "; "
"""Between the parts of a list parameter (a run's problems)."""


@dataclass(frozen=True)
class PluralMsg(Msg):
    """A message with a singular and a plural id, chosen by the `num` parameter (gettext's
    ngettext: languages with other plural rules pick their own form)."""

    plural: str = ""

    def __str__(self) -> str:
        return render(self)


@dataclass(frozen=True)
class Joined(Msg):
    """Several messages shown as one, each translated (see `joined`)."""

    def __str__(self) -> str:
        return render(self)


def NP_(singular: str, plural: str, num: int, **params: Any) -> PluralMsg:  # noqa: N802
    """Mark a counted message for translation (extracted with the keyword `NP_:1,2`)."""
    return PluralMsg(singular, {"num": num, **params}, plural)


def joined(parts: Iterable[Msg | str]) -> Msg:
    """Several messages shown as one, each translated (a run's problems)."""
    return Joined("%(parts)s", {"parts": list(parts)})


Translator = Callable[[Msg, dict[str, Any]], str]
"""Gives one message's text in a language, its parameters already rendered."""


def english(message: Msg, params: dict[str, Any]) -> str:
    """The message id itself (the plural id by `num`), parameters filled in."""
    text = message.text
    if isinstance(message, PluralMsg) and params.get("num") != 1:
        text = message.plural
    return text % params if params else text


def render(message: Msg | str, translator: Translator = english) -> str:
    """`message` as text, its parameters (messages, lists of them) rendered first."""
    if not isinstance(message, Msg):
        return str(message)

    def value(param: Any) -> Any:
        if isinstance(param, Msg):
            return render(param, translator)
        if isinstance(param, list | tuple):
            return SEPARATOR.join(str(value(part)) for part in param)
        return param

    params = {name: value(param) for name, param in message.params.items()}
    if isinstance(message, Joined):
        return str(params.get("parts", ""))
    return translator(message, params)


def to_json(message: Msg | str | None) -> dict[str, Any] | None:
    """A message as JSON for the store (None for None; a plain string becomes an id that
    the catalog may not know, shown as it is)."""
    if message is None:
        return None
    if not isinstance(message, Msg):
        return {"id": str(message)}
    data: dict[str, Any] = {"id": message.text}
    if message.params:
        data["params"] = {name: _param_json(param) for name, param in message.params.items()}
    if isinstance(message, PluralMsg):
        data["plural"] = message.plural
    if isinstance(message, Joined):
        data["joined"] = True
    return data


def _param_json(param: Any) -> Any:
    if isinstance(param, Msg):
        return {"msg": to_json(param)}
    if isinstance(param, list | tuple):
        return [_param_json(part) for part in param]
    if param is None or isinstance(param, bool | int | float | str):
        return param
    return str(param)


def from_json(data: Any) -> Msg | None:
    """The message stored by `to_json` (None for anything else: an older row)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        return None
    raw = data.get("params")
    params = (
        {str(k): _param_from_json(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
    )
    if isinstance(data.get("plural"), str):
        return PluralMsg(data["id"], params, data["plural"])
    if data.get("joined"):
        return Joined(data["id"], params)
    return Msg(data["id"], params)


def _param_from_json(value: Any) -> Any:
    if isinstance(value, Mapping) and "msg" in value:
        return from_json(value["msg"]) or ""
    if isinstance(value, list):
        return [_param_from_json(part) for part in value]
    return value


KIND_WORDS: dict[str, Msg] = {
    "contacts": N_("contacts"),
    "appointments": N_("appointments"),
    "recurringappointments": N_("recurring appointments"),
    "tasks": N_("tasks"),
    "email": N_("email"),
    "outgoing": N_("outgoing email"),
    "outgoing email": N_("outgoing email"),
    "connecting": N_("connecting"),
    "starting": N_("starting"),
}
"""What run messages call the engine's kinds and the run's stages, in people's words."""


def kind_word(name: str) -> Msg | str:
    """The kind or stage `name` in people's words (the name itself when it has none)."""
    return KIND_WORDS.get(name, name)
