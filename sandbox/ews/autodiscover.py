"""POX Autodiscover at /autodiscover/autodiscover.xml, as Exchange's Client Access service.

A client posts `<Autodiscover><Request><EMailAddress>…` (outlook request schema 2006) and gets
the user's settings (outlook response schema 2006a): an `EXPR` protocol whose `EwsUrl` is this
server's EWS endpoint. `redirects` maps an address to another one: the answer is then
`<Action>redirectAddr</Action>` with `<RedirectAddr>`, as for a user moved to another domain.
An address without a mailbox gets the documented error 500 ("The e-mail address cannot be
found."). Authentication is the endpoint's (Basic or Bearer), checked by the server before.
"""

from __future__ import annotations

from xml.etree import ElementTree
from xml.sax.saxutils import escape

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
ENVELOPE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
PATH = "/autodiscover/autodiscover.xml"


def requested_address(body: bytes) -> str | None:
    """The EMailAddress of a POX request (None when the body is not one)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    found = root.find(f"{{{REQUEST_NS}}}Request/{{{REQUEST_NS}}}EMailAddress")
    if found is None:  # some clients send the elements without the namespace
        found = root.find("Request/EMailAddress")
    return (found.text or "").strip().lower() if found is not None else None


def _document(inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<Autodiscover xmlns="{ENVELOPE_NS}"><Response xmlns="{RESPONSE_NS}">{inner}'
        "</Response></Autodiscover>"
    ).encode()


def settings(display_name: str, ews_url: str) -> bytes:
    return _document(
        f"<User><DisplayName>{escape(display_name)}</DisplayName></User>"
        "<Account><AccountType>email</AccountType><Action>settings</Action>"
        f"<Protocol><Type>EXPR</Type><EwsUrl>{escape(ews_url)}</EwsUrl></Protocol>"
        "</Account>"
    )


def redirect_address(address: str) -> bytes:
    return _document(
        "<Account><AccountType>email</AccountType><Action>redirectAddr</Action>"
        f"<RedirectAddr>{escape(address)}</RedirectAddr></Account>"
    )


def error(code: str, message: str) -> bytes:
    return _document(
        f'<Error Time="00:00:00" Id="1"><ErrorCode>{code}</ErrorCode>'
        f"<Message>{escape(message)}</Message><DebugData /></Error>"
    )
