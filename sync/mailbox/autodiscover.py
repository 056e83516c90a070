"""Find a mailbox's EWS address from its e-mail address (POX Autodiscover).

The steps Exchange documents for clients: post the request to
`https://<domain>/autodiscover/autodiscover.xml`, then to `https://autodiscover.<domain>/…`;
an answer may send us to another address (`redirectAddr`: start again with it) or another
server (`redirectUrl`, HTTPS only), at most ten times. The EWS address is the `EwsUrl` of the
`EXPR` (outside) or `EXCH` (inside) protocol. DNS SRV records and the unauthenticated HTTP
redirect are not tried: a user whose domain needs them types the address instead.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import httpx

from sync.crm.client import tls_context
from sync.mailbox.ews_connection import BasicAuth, OAuthToken
from sync.sides import AuthError, Invalid

log = logging.getLogger(__name__)

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MAX_REDIRECTS = 10
PROTOCOL_PREFERENCE = ("EXPR", "EXCH")


def candidate_urls(email: str) -> list[str]:
    domain = email.rpartition("@")[2].strip().lower()
    return [
        f"https://{domain}/autodiscover/autodiscover.xml",
        f"https://autodiscover.{domain}/autodiscover/autodiscover.xml",
    ]


def request_body(email: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{REQUEST_NS}"><Request>'
        f"<EMailAddress>{escape(email)}</EMailAddress>"
        f"<AcceptableResponseSchema>{RESPONSE_NS}</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    ).encode()


@dataclass(frozen=True)
class Answer:
    """What one Autodiscover answer says: the EWS address, a redirect, or an error."""

    ews_url: str | None = None
    redirect_addr: str | None = None
    redirect_url: str | None = None
    error: str | None = None


def parse_answer(payload: bytes) -> Answer:
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError:
        return Answer(error="the answer is not XML")
    ns = {"r": RESPONSE_NS}
    message = root.findtext(".//r:Error/r:Message", namespaces=ns) or root.findtext(
        ".//{*}Error/{*}Message"
    )
    if message:
        return Answer(error=message.strip())
    account = root.find(".//r:Account", ns)
    if account is None:
        return Answer(error="the answer has no account settings")
    action = (account.findtext("r:Action", namespaces=ns) or "").strip()
    if action == "redirectAddr":
        return Answer(
            redirect_addr=(account.findtext("r:RedirectAddr", namespaces=ns) or "").strip()
        )
    if action == "redirectUrl":
        return Answer(redirect_url=(account.findtext("r:RedirectUrl", namespaces=ns) or "").strip())
    urls = {
        (p.findtext("r:Type", namespaces=ns) or "").strip(): (
            p.findtext("r:EwsUrl", namespaces=ns) or ""
        ).strip()
        for p in account.findall("r:Protocol", ns)
    }
    for kind in PROTOCOL_PREFERENCE:
        if urls.get(kind):
            return Answer(ews_url=urls[kind])
    return Answer(error="the answer names no EWS address")


def discover(
    email: str,
    auth_for: Callable[[str], BasicAuth | OAuthToken],
    ca_file: str | None = None,
    candidates: Callable[[str], Sequence[str]] = candidate_urls,
    timeout: float = 15.0,
) -> str:
    """The EWS address of `email`'s mailbox. `auth_for(url)`: the credentials for a service
    (a bearer token's audience is the server). Raises AuthError when a server refused the
    credentials, Invalid (naming every place tried) when nothing answered with settings."""
    tried: list[str] = []
    refused = False
    address, urls = email, list(candidates(email))
    with httpx.Client(verify=tls_context(ca_file), timeout=timeout) as http:
        hops = 0
        while urls and hops <= MAX_REDIRECTS:
            url = urls.pop(0)
            tried.append(url)
            try:
                reply = http.post(
                    url,
                    content=request_body(address),
                    headers={
                        "Content-Type": "text/xml; charset=utf-8",
                        **_authorization(auth_for(url)),
                    },
                )
            except httpx.HTTPError as failed:
                log.info("autodiscover: %s did not answer (%s)", url, type(failed).__name__)
                continue
            if reply.status_code == 401:
                refused = True
                continue
            if reply.status_code != 200:
                continue
            answer = parse_answer(reply.content)
            if answer.ews_url:
                return answer.ews_url
            if answer.redirect_addr and "@" in answer.redirect_addr:
                hops += 1
                address, urls = answer.redirect_addr, list(candidates(answer.redirect_addr))
            elif answer.redirect_url and answer.redirect_url.lower().startswith("https://"):
                hops += 1
                urls = [answer.redirect_url]
            elif answer.error:
                log.info("autodiscover: %s answered: %s", url, answer.error)
    if refused:
        raise AuthError(f"Autodiscover refused the credentials for {email}.", code="401")
    raise Invalid(
        f"Autodiscover found no Exchange settings for {email} (tried {', '.join(tried)}). "
        "Type the EWS address (https://<server>/EWS/Exchange.asmx).",
        code="autodiscover",
    )


def _authorization(auth: BasicAuth | OAuthToken) -> dict[str, str]:
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {"Authorization": "Bearer " + auth.token_provider()}
