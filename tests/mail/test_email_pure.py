"""The pure parts of email tracking: the tracking token, correlation in Dynamics' order, the
decision of each way, and the message → CRM email mapping (the HTML sanitiser above all)."""

from __future__ import annotations

import base64

import pytest

from sync.kinds.email import (
    addresses,
    body_html,
    has_party,
    is_outgoing,
    my_party,
    new_email,
    sanitize_html,
    text_to_html,
)
from sync.mail.correlate import (
    Lookups,
    conversation_root,
    correlate,
    message_id_of,
    normalize_id,
    referenced_ids,
)
from sync.mail.facade import RecordRef
from sync.mail.ports import BCC, CC, FROM, TO, CrmEmail, Party
from sync.mail.token import SUBJECT_MAX, add_token, find_token, format_token, strip_token, token_for
from sync.mail.tracking import CATEGORY, FOLDER, RULE, USER, Facts, decide, may_track

DEAL = RecordRef("opportunities", "o-1", "Deal")
CAROL = RecordRef("contacts", "c-1", "Carol")
ME = RecordRef("systemusers", "u-me", "Me")


def email(regarding: RecordRef | None = None, message_id: str = "<orig@x>") -> CrmEmail:
    return CrmEmail("e-1", "Offer", message_id, True, regarding)


# --- the token ---------------------------------------------------------------------------------


def test_token_format_find_and_strip() -> None:
    assert format_token(1234, "CRM:", 7) == "CRM:0001234"
    assert find_token("RE: Offer CRM:0001234", "CRM:") == "CRM:0001234"
    assert find_token("RE: Offer crm:0001234 then CRM:0009999", "CRM:") == "CRM:0009999"
    assert find_token("XCRM:0001234", "CRM:") is None, "glued to a word: not a token"
    assert find_token("no token here", "CRM:") is None
    assert strip_token("RE: Offer CRM:0001234", "CRM:") == "RE: Offer"


def test_a_token_is_stable_per_email_and_fits_the_column() -> None:
    one = token_for("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert one == token_for("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert one != token_for("3f2504e0-4f89-11d3-9a0c-0305e82c3302")
    assert one.startswith("CRM:") and len(one) <= 50


@pytest.mark.parametrize("length", [0, 10, 240, 254, 255, 400])
def test_the_subject_keeps_the_token_within_255_characters(length: int) -> None:
    token = "CRM:0000000042"
    subject = add_token("x" * length, token)
    assert len(subject) <= SUBJECT_MAX and subject.endswith(token)
    assert add_token(subject, token) == subject, "added once"


# --- correlation ---------------------------------------------------------------------------------


def test_message_ids_are_normalised_and_a_missing_one_is_stable() -> None:
    assert normalize_id(" <a@b> ") == "<a@b>" and normalize_id("a@b") == "<a@b>"
    assert normalize_id("") is None
    stand_in = message_id_of({}, "item-1")
    assert stand_in == message_id_of({"message_id": None}, "item-1") != message_id_of({}, "x")
    fields = {"message_id": "<me@x>", "in_reply_to": "<p@x>", "references": "<a@x> <p@x> <me@x>"}
    assert referenced_ids(fields) == ["<p@x>", "<a@x>"]


def test_correlation_order_reference_then_token_then_conversation() -> None:
    header = bytes([1]) + bytes(21)
    reply_index = base64.b64encode(header + bytes(5)).decode()
    root = conversation_root(reply_index)
    assert root == base64.b64encode(header).decode()
    assert conversation_root(base64.b64encode(header).decode()) is None, "a first message"
    by_ref, by_token, by_conv = email(DEAL), email(CAROL, "<t@x>"), email(None, "<c@x>")
    lookups = Lookups({"<orig@x>": by_ref}, {"CRM:0000000001": by_token}, {root or "": by_conv})
    fields = {
        "message_id": "<r@x>",
        "in_reply_to": "<orig@x>",
        "subject": "RE: CRM:0000000001",
        "conversation_index": reply_index,
    }
    found = correlate(fields, lookups, "CRM:")
    assert found is not None and (found.email, found.how) == (by_ref, "reference")
    found = correlate({**fields, "in_reply_to": None}, lookups, "CRM:")
    assert found is not None and (found.email, found.how) == (by_token, "token")
    found = correlate({**fields, "in_reply_to": None}, lookups, None)  # tokens off
    assert found is not None and (found.email, found.how) == (by_conv, "conversation")
    assert correlate({"message_id": "<n@x>", "subject": "hi"}, lookups, "CRM:") is None


# --- decisions ----------------------------------------------------------------------------------


def test_each_way_and_its_regarding() -> None:
    thread = email(CAROL)
    assert decide("none", Facts()).track is False
    user = decide("none", Facts(user=True, user_regarding=DEAL, correlated=thread))
    assert (user.way, user.regarding, user.explicit) == (USER, DEAL, True)
    category = decide("none", Facts(category=True, correlated=thread))
    assert (category.way, category.regarding, category.explicit) == (CATEGORY, CAROL, False)
    folder = decide("none", Facts(folder=True, folder_regarding=DEAL, correlated=thread))
    assert (folder.way, folder.regarding, folder.explicit) == (FOLDER, DEAL, True)
    rule = decide("replies", Facts(correlated=thread))
    assert (rule.way, rule.regarding) == (RULE, CAROL)
    assert not decide("replies", Facts()).track
    assert decide("records", Facts(from_record=True)).track
    assert not decide("records", Facts(from_enabled=True)).track
    assert decide("email_enabled", Facts(from_enabled=True)).track
    assert not decide("all", Facts(in_window=False)).track, "older than the start"
    assert decide("all", Facts(in_window=False, category=True)).track, "by hand: any age"


def test_an_untracked_message_stays_untracked_but_for_the_user() -> None:
    assert not decide("all", Facts(untracked=True)).track
    assert not decide("all", Facts(untracked=True, folder=True)).track
    assert not decide("all", Facts(untracked_copy=True)).track
    assert decide("all", Facts(untracked_copy=True, folder=True)).track, "filed again by hand"
    assert decide("all", Facts(untracked=True, category=True)).track
    assert decide("none", Facts(untracked=True, user=True)).track
    assert not may_track("all", Facts(untracked=True))
    assert not may_track("none", Facts())


# --- the mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<p>Hi<script>alert(1)</script></p>", "<p>Hi</p>"),
        ("<style>p{}</style><p>x</p>", "<p>x</p>"),
        ('<p onclick="steal()" class="a">x</p>', '<p class="a">x</p>'),
        ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
        ('<a href=" JaVa&#115;cript:alert(1)">x</a>', "<a>x</a>"),
        (
            '<a href="https://example.com/?a=1&amp;b=2">x</a>',
            '<a href="https://example.com/?a=1&amp;b=2">x</a>',
        ),  # fmt: skip
        ('<img src="data:image/png;base64,AAAA">', '<img src="data:image/png;base64,AAAA">'),
        ('<img src="data:text/html,<script>">', "<img>"),
        ('<div style="background:url(javascript:x)">y</div>', "<div>y</div>"),
        ("<!--[if IE]><script>x</script><![endif]--><b>ok</b>", "<b>ok</b>"),
        ('<iframe src="https://evil"></iframe><p>after</p>', "<p>after</p>"),
        ("<p>1 &lt; 2 &amp; 3</p>", "<p>1 &lt; 2 &amp; 3</p>"),
        ('<svg onload="x"><script>y</script></svg>text', "text"),
    ],
)
def test_the_html_body_is_sanitised(dirty: str, clean: str) -> None:
    assert sanitize_html(dirty) == clean


def test_plain_text_becomes_escaped_paragraphs() -> None:
    assert text_to_html("Hi <you>,\r\nline 2\n\n\nBye & thanks") == (
        "<p>Hi &lt;you&gt;,<br>line 2</p><p>Bye &amp; thanks</p>"
    )
    assert body_html({"body": "<b>x</b>", "body_type": "HTML"}) == "<b>x</b>"
    assert body_html({"body": "<b>x</b>", "body_type": "Text"}) == "<p>&lt;b&gt;x&lt;/b&gt;</p>"
    assert body_html({}) == ""


def test_direction_parties_and_the_new_email() -> None:
    fields = {
        "message_id": "<m@x>",
        "in_reply_to": "<p@x>",
        "subject": "Hello",
        "sender": "Carol@Customer.example",
        "to": ["me@contoso.example", "carol@customer.example"],
        "cc": ["other@x.example", "other@x.example"],
        "bcc": [],
        "received": "2026-03-02T10:00:00Z",
        "sent": "2026-03-02T09:59:00Z",
        "conversation_index": "AQ==",
    }
    assert not is_outgoing(fields, "inbox", ["me@contoso.example"])
    assert is_outgoing(fields, "sentitems", [])
    assert is_outgoing({**fields, "sender": "ME@contoso.example"}, "inbox", ["me@contoso.example"])
    assert addresses(fields) == [
        (FROM, "Carol@Customer.example"),
        (TO, "me@contoso.example"),
        (TO, "carol@customer.example"),
        (CC, "other@x.example"),
    ]
    made = new_email(
        "e-9", "item-1", fields, outgoing=False,
        resolved={"carol@customer.example": CAROL, "me@contoso.example": ME}, regarding=DEAL,
    )  # fmt: skip
    assert (made.id, made.message_id, made.in_reply_to, made.regarding) == (
        "e-9", "<m@x>", "<p@x>", DEAL
    )  # fmt: skip
    assert made.received_on == "2026-03-02T10:00:00Z" and made.sent_on == "2026-03-02T09:59:00Z"
    assert made.parties[0] == Party(FROM, "Carol@Customer.example", CAROL)
    assert made.parties[-1] == Party(CC, "other@x.example", None)
    assert has_party(made.parties, ME, ["me@contoso.example"])
    assert my_party(fields, ME, ["me@contoso.example"], False) == Party(
        TO, "me@contoso.example", ME
    )
    assert my_party(fields, ME, ["bob@contoso.example"], False).mask == BCC
    assert my_party(fields, ME, ["bob@contoso.example"], True).mask == FROM
