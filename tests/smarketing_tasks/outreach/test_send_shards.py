"""Send shards: names of the mapped send tasks, and each shard's part of a channel's rate limits."""

from __future__ import annotations

import pytest

from smarketing_tasks.outreach import OutreachSettings, parse_send_shard, send_shards, shard_settings


def test_one_shard_per_channel_keeps_the_channel_names():
    assert send_shards(["email", "sms"], 1) == ["email", "sms"]
    assert [parse_send_shard(name) for name in ["email", "sms"]] == [("email", 1), ("sms", 1)]


def test_shards_are_named_per_channel_and_parse_back():
    names = send_shards(["email", "sms"], 2)
    assert names == ["email 1/2", "email 2/2", "sms 1/2", "sms 2/2"]
    assert [parse_send_shard(name) for name in names] == [("email", 2), ("email", 2), ("sms", 2), ("sms", 2)]


@pytest.mark.parametrize("name", ["email 0/2", "email 3/2", "email x/2", "email 1", "email 1/"])
def test_a_malformed_shard_name_is_refused(name):
    with pytest.raises(ValueError, match="not a send shard"):
        parse_send_shard(name)


def test_zero_shards_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        send_shards(["email"], 0)


def test_shards_split_the_channel_rate_limits_and_unlimited_stays_unlimited():
    settings = OutreachSettings(email_rate_per_second=10.0, webhook_rate_per_second=20.0)
    half = shard_settings(settings, 2)
    assert (half.email_rate_per_second, half.webhook_rate_per_second) == (5.0, 10.0)
    assert shard_settings(settings, 1) == settings
    assert shard_settings(OutreachSettings(email_rate_per_second=0.0), 4).email_rate_per_second == 0.0
