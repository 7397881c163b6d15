from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smarketing_tasks.tokens import InvalidToken, Purpose, sign, verify

KEY = b"k" * 32
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_round_trip_and_rotation():
    token = sign(KEY, "abc123", Purpose.REVIEW, NOW + timedelta(days=30))
    claims = verify(KEY, token, NOW, Purpose.REVIEW)
    assert (claims.message_id, claims.purpose) == ("abc123", Purpose.REVIEW)
    assert verify([b"new" * 11, KEY], token, NOW).message_id == "abc123", "old key still accepted during rotation"


@pytest.mark.parametrize(("mutate", "kind"), [
    (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "forged"),
    (lambda t: "x" + t, "forged"),
    (lambda t: t.replace(".", ""), "malformed"),
    (lambda t: "", "malformed"),
])
def test_tampered_tokens_are_refused(mutate, kind):
    token = sign(KEY, "abc123", Purpose.REVIEW, NOW + timedelta(days=1))
    with pytest.raises(InvalidToken) as error:
        verify(KEY, mutate(token), NOW)
    assert error.value.kind == kind


def test_expired_and_wrong_purpose():
    token = sign(KEY, "m", Purpose.UNSUBSCRIBE, NOW - timedelta(seconds=1))
    with pytest.raises(InvalidToken, match="expired"):
        verify(KEY, token, NOW)
    fresh = sign(KEY, "m", Purpose.UNSUBSCRIBE, NOW + timedelta(days=1))
    with pytest.raises(InvalidToken) as error:
        verify(KEY, fresh, NOW, Purpose.REVIEW)
    assert error.value.kind == "wrong_purpose"
