"""One-time codes: bound to their purpose, counted, expiring, single use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from signet.common.otp import (
    CodeVerdict,
    check_code,
    issue_code,
    link_token_hash,
    new_link_token,
)

PEPPER = b"k" * 32
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_a_code_checks_once_for_its_purpose_only() -> None:
    code, record = issue_code(PEPPER, "recipient:1", now=NOW)
    assert len(code) == 6 and code.isdigit()
    assert code not in record.digest
    other = check_code(PEPPER, record, code, purpose="recipient:2", now=NOW)
    assert other.verdict is CodeVerdict.WRONG  # a code for one document never checks for another
    ok = check_code(PEPPER, other.record, code, purpose="recipient:1", now=NOW)
    assert ok.verdict is CodeVerdict.ACCEPTED
    again = check_code(PEPPER, ok.record, code, purpose="recipient:1", now=NOW)
    assert again.verdict is CodeVerdict.USED


def test_five_wrong_attempts_lock_even_the_right_code() -> None:
    code, record = issue_code(PEPPER, "p", now=NOW)
    wrong = "000000" if code != "000000" else "111111"
    remaining = []
    for _ in range(5):
        result = check_code(PEPPER, record, wrong, purpose="p", now=NOW)
        record = result.record
        remaining.append(result.remaining)
    assert remaining == [4, 3, 2, 1, 0]
    assert result.verdict is CodeVerdict.LOCKED
    assert check_code(PEPPER, record, code, purpose="p", now=NOW).verdict is CodeVerdict.LOCKED


def test_codes_expire_after_five_minutes() -> None:
    code, record = issue_code(PEPPER, "p", now=NOW)
    late = NOW + timedelta(minutes=5)
    assert check_code(PEPPER, record, code, purpose="p", now=late).verdict is CodeVerdict.EXPIRED
    just = NOW + timedelta(minutes=4, seconds=59)
    assert check_code(PEPPER, record, code, purpose="p", now=just).verdict is CodeVerdict.ACCEPTED


def test_another_pepper_never_checks() -> None:
    code, record = issue_code(PEPPER, "p", now=NOW)
    assert check_code(b"x" * 32, record, code, purpose="p", now=NOW).verdict is CodeVerdict.WRONG
    with pytest.raises(ValueError, match="16 bytes"):
        issue_code(b"short", "p")


@given(st.text(max_size=12))
def test_no_presented_text_but_the_code_is_accepted(presented: str) -> None:
    code, record = issue_code(PEPPER, "p", now=NOW)
    verdict = check_code(PEPPER, record, presented, purpose="p", now=NOW).verdict
    assert (verdict is CodeVerdict.ACCEPTED) == (presented.strip() == code)


def test_link_tokens_are_long_random_and_stored_hashed() -> None:
    tokens = {new_link_token() for _ in range(100)}
    assert len(tokens) == 100
    token, digest = next(iter(tokens))
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert digest == link_token_hash(token) and token not in digest
