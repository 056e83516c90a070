"""XML helpers for the sandbox EWS: namespaces, element builders, the SOAP envelope and faults.

lxml (installed with exchangelib) parses requests with entities and network access off, so a
hostile body cannot make the sandbox read files or fetch URLs.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any, TypeAlias

from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAP, "t": T, "m": M}

Element: TypeAlias = Any
"""An lxml element (`lxml.etree._Element`); typed loosely as lxml ships no type stubs here."""

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=True, remove_blank_text=True
)


class EwsError(Exception):
    """A per-message EWS error (ResponseClass="Error"): the request as a whole was understood."""

    def __init__(self, code: str, text: str = "", xml: Element | None = None) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text or code
        self.xml = xml


class SoapFault(Exception):
    """A whole-request failure answered as a SOAP Fault with HTTP 500 (as Exchange does)."""

    def __init__(self, code: str, text: str, values: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.values = values or {}


def parse(data: bytes) -> Element:
    return etree.fromstring(data, _PARSER)


def t(name: str) -> str:
    return f"{{{T}}}{name}"


def m(name: str) -> str:
    return f"{{{M}}}{name}"


def local(elem: Element) -> str:
    return etree.QName(elem).localname


def el(tag: str, text: str | None = None, **attrs: str) -> Element:
    """A new element; `tag` is a Clark name; attributes with None values are left out."""
    node = etree.Element(tag, {k: v for k, v in attrs.items() if v is not None}, nsmap=NSMAP)
    if text is not None:
        node.text = text
    return node


def sub(parent: Element, tag: str, text: str | None = None, **attrs: str | None) -> Element:
    node = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        node.text = text
    return node


def find(parent: Element | None, path: str) -> Element | None:
    """`path` with t:/m: prefixes, e.g. "t:ItemId"."""
    if parent is None:
        return None
    return parent.find(path, NSMAP)


def findall(parent: Element | None, path: str) -> list[Element]:
    if parent is None:
        return []
    return list(parent.findall(path, NSMAP))


def text(parent: Element | None, path: str, default: str | None = None) -> str | None:
    node = find(parent, path)
    if node is None or node.text is None:
        return default
    return node.text


def copy(elem: Element) -> Element:
    return deepcopy(elem)


def tostring(elem: Element) -> bytes:
    return etree.tostring(elem)


SERVER_VERSION = {
    "MajorVersion": "15",
    "MinorVersion": "1",
    "MajorBuildNumber": "2507",
    "MinorBuildNumber": "6",
    "Version": "V2017_07_11",
}


def envelope(body_child: Element | None) -> bytes:
    """The SOAP 1.1 envelope every answer goes in, with ServerVersionInfo in the header."""
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap=NSMAP)
    header = etree.SubElement(env, f"{{{SOAP}}}Header")
    etree.SubElement(header, t("ServerVersionInfo"), SERVER_VERSION)
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    if body_child is not None:
        body.append(body_child)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def fault(fault: SoapFault, with_header: bool = True) -> bytes:
    """A SOAP Fault as Exchange sends it: faultcode, faultstring, detail with e:ResponseCode."""
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap=NSMAP)
    if with_header:
        header = etree.SubElement(env, f"{{{SOAP}}}Header")
        etree.SubElement(header, t("ServerVersionInfo"), SERVER_VERSION)
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    node = etree.SubElement(body, f"{{{SOAP}}}Fault")
    code_prefix = "a" if fault.code.startswith("Error") else "s"
    code = etree.SubElement(node, "faultcode", nsmap={"a": T} if code_prefix == "a" else None)
    code.text = f"{code_prefix}:{fault.code}" if code_prefix == "a" else f"s:{fault.code}"
    string = etree.SubElement(node, "faultstring")
    string.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    string.text = fault.text
    if fault.code.startswith("Error"):
        detail = etree.SubElement(node, "detail")
        rc = etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E})
        rc.text = fault.code
        msg = etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E})
        msg.text = fault.text
        if fault.values:
            mx = etree.SubElement(detail, t("MessageXml"))
            for name, value in fault.values.items():
                etree.SubElement(mx, t("Value"), {"Name": name}).text = value
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def response_message(tag: str, error: EwsError | None = None, warning: bool = False) -> Element:
    """An m:<Op>ResponseMessage with ResponseClass, ResponseCode (and MessageText on error)."""
    if error is None:
        node = el(m(tag), ResponseClass="Success")
        sub(node, m("ResponseCode"), "NoError")
        return node
    node = el(m(tag), ResponseClass="Warning" if warning else "Error")
    sub(node, m("MessageText"), error.text)
    sub(node, m("ResponseCode"), error.code)
    sub(node, m("DescriptiveLinkKey"), "0")
    if error.xml is not None:
        node.append(error.xml)
    return node


def wrap_messages(op: str, messages: list[Element]) -> Element:
    """m:<Op>Response / m:ResponseMessages / the messages."""
    resp = el(m(f"{op}Response"))
    container = sub(resp, m("ResponseMessages"))
    for message in messages:
        container.append(message)
    return resp


def children(parent: Element | None, path: str) -> list[Element]:
    """The children of the element at `path` ([] when absent): lxml elements without children
    are falsy, so `find(...) or []` idioms are avoided."""
    node = find(parent, path)
    return [] if node is None else list(node)
