"""No secret in a log line: remembered values and secret-named fields are masked."""

from __future__ import annotations

import logging

import pytest

from sync.redaction import MASK, RedactingFilter, redact, remember_secret


def test_a_library_printing_a_token_dict_prints_masks() -> None:
    # what requests-oauthlib logs at DEBUG before each request
    line = "Adding token {'access_token': 'sbx.abcDEF123_-xyz', 'token_type': 'Bearer'} to request."
    assert "sbx.abcDEF123_-xyz" not in redact(line)
    assert "'access_token': '" + MASK in redact(line)
    assert redact("refresh_token=rt-9876&grant_type=refresh_token") == (
        f"refresh_token={MASK}&grant_type=refresh_token"
    )
    assert redact("Authorization: Bearer eyJ0eXAiOiJKV1Qi.x.y") == f"Authorization: Bearer {MASK}"
    assert redact("nothing to hide here") == "nothing to hide here"


def test_remembered_values_are_masked_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    remember_secret("Pa55-word-of-alice")
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("login as %s with %s", "alice", "Pa55-word-of-alice")
        try:
            raise ValueError("refused: Pa55-word-of-alice")
        except ValueError:
            logger.exception("failed")
    assert "Pa55-word-of-alice" not in caplog.text
    assert caplog.text.count(MASK) == 2
