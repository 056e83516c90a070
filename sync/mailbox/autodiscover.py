"""Find a mailbox's EWS address from its e-mail address (POX Autodiscover).

The steps Exchange documents for clients ("Autodiscover for Exchange", "Handling Autodiscover
error messages"):

1. Post the request to `https://<domain>/autodiscover/autodiscover.xml`, then to
   `https://autodiscover.<domain>/…`. An answer may send us to another address (`redirectAddr`:
   start again with it) or to another server (`redirectUrl`, or an HTTP 301/302), HTTPS only,
   at most ten times in all.
2. When no candidate answered with settings, send an unauthenticated GET to
   `http://autodiscover.<domain>/autodiscover/autodiscover.xml` (not TLS); a 301/302 whose
   Location is an https URL is where the request is posted next. Nothing else is followed, and
   no credentials ever go to a plain-HTTP address.
3. Last, look up the DNS SRV records `_autodiscover._tcp.<domain>`: only records pointing to
   port 443, of the best priority and the highest weight, as `https://<target>/autodiscover/…`.

The EWS address is the `EwsUrl` of the `EXPR` (outside) or `EXCH` (inside) protocol. The SCP
lookup in Active Directory is not done (this app is not a domain member).

Credentials are asked per server: a bearer token's audience is the server it is sent to (see
sync.auth.ews_scope), so a token that cannot be had for one candidate only skips that one.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import httpx

from sync.crm.client import tls_context
from sync.mailbox.ews_connection import BasicAuth, MailboxAuth, NtlmAuth
from sync.sides import AuthError, Invalid, SideError

log = logging.getLogger(__name__)

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MAX_REDIRECTS = 10
PROTOCOL_PREFERENCE = ("EXPR", "EXCH")
SRV_PREFIX = "_autodiscover._tcp."
SRV_TLS_PORT = 443
"""Only SRV records that point to an SSL endpoint are used (the EWS Managed API keeps port
443 only)."""
DNS_TIMEOUT = 5.0


def _domain(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()


def candidate_urls(email: str) -> list[str]:
    domain = _domain(email)
    return [
        f"https://{domain}/autodiscover/autodiscover.xml",
        f"https://autodiscover.{domain}/autodiscover/autodiscover.xml",
    ]


def http_redirect_urls(email: str) -> list[str]:
    """Where the unauthenticated GET of the HTTP redirect method goes (plain HTTP)."""
    return [f"http://autodiscover.{_domain(email)}/autodiscover/autodiscover.xml"]


@dataclass(frozen=True)
class SrvRecord:
    """One DNS SRV answer (RFC 2782: lower priority first; higher weight preferred)."""

    priority: int
    weight: int
    port: int
    target: str


SrvLookup = Callable[[str], Sequence[SrvRecord]]


def dns_srv_lookup(name: str) -> list[SrvRecord]:
    """The SRV records of `name` from the system's DNS resolver (none when it fails)."""
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "SRV", lifetime=DNS_TIMEOUT)
    except (dns.exception.DNSException, OSError) as failed:
        log.info("autodiscover: no SRV record %s (%s)", name, type(failed).__name__)
        return []
    return [
        SrvRecord(int(r.priority), int(r.weight), int(r.port), str(r.target).rstrip("."))
        for r in answer
    ]


def srv_urls(records: Sequence[SrvRecord]) -> list[str]:
    """The Autodiscover URLs of the usable SRV records: port 443, the best priority (the lowest
    number) and, among those, the highest weight ("Autodiscover for Exchange", phase 3)."""
    usable = [r for r in records if r.port == SRV_TLS_PORT and r.target]
    if not usable:
        return []
    best = min(r.priority for r in usable)
    heaviest = max(r.weight for r in usable if r.priority == best)
    urls: list[str] = []
    for record in usable:
        url = f"https://{record.target.lower()}/autodiscover/autodiscover.xml"
        if record.priority == best and record.weight == heaviest and url not in urls:
            urls.append(url)
    return urls


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


def _is_https(url: str | None) -> bool:
    return bool(url) and urlsplit(str(url)).scheme.lower() == "https"


@dataclass
class _Search:
    """One discovery: what was tried, and why candidates failed."""

    http: httpx.Client
    auth_for: Callable[[str], MailboxAuth]
    tried: list[str] = field(default_factory=list)
    refused: bool = False
    token_error: AuthError | None = None
    hops: int = 0

    def post_all(self, address: str, urls: Sequence[str]) -> tuple[str | None, str | None]:
        """Post to each URL in turn, following redirectUrl/301/302 (HTTPS only).

        Returns (EWS URL, None) when found, (None, new address) for a redirectAddr."""
        queue = list(urls)
        while queue and self.hops <= MAX_REDIRECTS:
            url = queue.pop(0)
            answer, moved_to = self.post(address, url)
            if answer is not None and answer.ews_url:
                return answer.ews_url, None
            if answer is not None and answer.redirect_addr and "@" in answer.redirect_addr:
                if answer.redirect_addr.lower() == address.lower():
                    continue  # a redirect to the same address: this server is no use
                self.hops += 1
                return None, answer.redirect_addr
            target = moved_to or (answer.redirect_url if answer is not None else None)
            if target and _is_https(target) and target not in self.tried:
                self.hops += 1
                queue.insert(0, target)
            elif answer is not None and answer.error:
                log.info("autodiscover: %s answered: %s", url, answer.error)
        return None, None

    def post(self, address: str, url: str) -> tuple[Answer | None, str | None]:
        """One authenticated POST: its parsed answer, or the https Location of a 301/302."""
        self.tried.append(url)
        try:
            credentials = self.auth_for(url)
            headers, auth = _authorization(credentials)
        except AuthError as no_token:  # e.g. no such resource, or no consent for it yet
            log.info("autodiscover: no credentials for %s (%s)", url, no_token.code)
            if self.token_error is None or (
                no_token.code == "consent_required" != self.token_error.code
            ):
                self.token_error = no_token  # a missing consent is the one the user can fix
            return None, None
        try:
            reply = self.http.post(
                url,
                content=request_body(address),
                headers={"Content-Type": "text/xml; charset=utf-8", **headers},
                auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as failed:
            log.info("autodiscover: %s did not answer (%s)", url, type(failed).__name__)
            return None, None
        if reply.status_code == 401:
            self.refused = True
            return None, None
        if reply.status_code in (301, 302):
            location = reply.headers.get("Location", "")
            return None, location if _is_https(location) else None
        if reply.status_code != 200:
            return None, None
        return parse_answer(reply.content), None

    def redirect_target(self, probe: str) -> str | None:
        """The HTTP redirect method: an unauthenticated GET; an https Location or None."""
        self.tried.append(probe)
        try:
            reply = self.http.get(probe)
        except httpx.HTTPError as failed:
            log.info("autodiscover: %s did not answer (%s)", probe, type(failed).__name__)
            return None
        location = reply.headers.get("Location", "")
        if reply.status_code in (301, 302) and _is_https(location):
            log.info("autodiscover: %s redirects to %s", probe, location)
            return location
        return None


def discover(
    email: str,
    auth_for: Callable[[str], MailboxAuth],
    ca_file: str | None = None,
    candidates: Callable[[str], Sequence[str]] = candidate_urls,
    timeout: float = 15.0,
    *,
    redirect_probes: Callable[[str], Sequence[str]] = http_redirect_urls,
    srv_lookup: SrvLookup = dns_srv_lookup,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """The EWS address of `email`'s mailbox. `auth_for(url)`: the credentials for a service
    (a bearer token's audience is the server). `redirect_probes` and `srv_lookup` are the HTTP
    redirect and DNS SRV steps (pass `lambda _: []` to skip one); `transport` replaces the
    network (tests). Raises the token error when no candidate could be asked for want of one
    (e.g. sync.auth.ConsentRequired), AuthError when a server refused the credentials, Invalid
    (naming every place tried) when nothing answered with settings."""
    with httpx.Client(
        verify=tls_context(ca_file), timeout=timeout, follow_redirects=False, transport=transport
    ) as http:
        search = _Search(http, auth_for)
        address = email
        while search.hops <= MAX_REDIRECTS:
            found, address_moved = search.post_all(address, candidates(address))
            if found is None and address_moved is None:
                found, address_moved = _last_steps(search, address, redirect_probes, srv_lookup)
            if found:
                return found
            if address_moved is None:
                break
            address = address_moved
    if search.token_error is not None and not search.refused:
        raise search.token_error
    if search.refused:
        raise AuthError(f"Autodiscover refused the credentials for {email}.", code="401")
    raise Invalid(
        f"Autodiscover found no Exchange settings for {email} (tried {', '.join(search.tried)}). "
        "Type the EWS address (https://<server>/EWS/Exchange.asmx).",
        code="autodiscover",
    )


def _last_steps(
    search: _Search,
    address: str,
    redirect_probes: Callable[[str], Sequence[str]],
    srv_lookup: SrvLookup,
) -> tuple[str | None, str | None]:
    """Phase 3: the HTTP redirect method, then DNS SRV."""
    for probe in redirect_probes(address):
        target = search.redirect_target(probe)
        if target:
            search.hops += 1
            found = search.post_all(address, [target])
            if found != (None, None):
                return found
    urls = srv_urls(srv_lookup(SRV_PREFIX + _domain(address)))
    return search.post_all(address, urls) if urls else (None, None)


def _authorization(auth: MailboxAuth) -> tuple[dict[str, str], httpx.Auth | None]:
    """The request's Authorization header, or the httpx auth flow that makes it (NTLM)."""
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}, None
    if isinstance(auth, NtlmAuth):
        return {}, NtlmFlow(auth.username, auth.password)
    try:
        return {"Authorization": "Bearer " + auth.token_provider()}, None
    except SideError:
        raise
    except Exception as failed:  # a provider that is not ours
        raise AuthError(f"No token for Autodiscover: {failed}") from failed


class NtlmFlow(httpx.Auth):
    """NTLM over HTTP (MS-NTHT): negotiate, read the server's challenge from the 401's
    `WWW-Authenticate: NTLM <token>`, answer it on the same connection. The password never
    leaves this computer (pyspnego computes the NTLMv2 response)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        import spnego

        context = spnego.client(
            self.username, self.password, hostname=request.url.host, protocol="ntlm"
        )
        request.headers["Authorization"] = "NTLM " + _b64(context.step() or b"")
        response = yield request
        challenge = _ntlm_challenge(response.headers.get_list("WWW-Authenticate"))
        if response.status_code != 401 or challenge is None:
            return
        request.headers["Authorization"] = "NTLM " + _b64(context.step(challenge) or b"")
        yield request


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _ntlm_challenge(values: Sequence[str]) -> bytes | None:
    for value in values:
        for part in value.split(","):
            scheme, _, token = part.strip().partition(" ")
            if scheme.lower() == "ntlm" and token.strip():
                try:
                    return base64.b64decode(token.strip())
                except ValueError:
                    return None
    return None


__all__ = [
    "MAX_REDIRECTS",
    "Answer",
    "NtlmFlow",
    "SrvRecord",
    "candidate_urls",
    "discover",
    "dns_srv_lookup",
    "http_redirect_urls",
    "parse_answer",
    "srv_urls",
]
