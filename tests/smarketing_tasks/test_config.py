from __future__ import annotations

from datetime import timedelta

import pytest

from smarketing_tasks.config import IngestSettings, load, parse_variable


def test_defaults_environment_and_variable_layers():
    assert load(IngestSettings, {}) == IngestSettings()
    env = {"SMARKETING_BATCH_ROWS": "5000", "SMARKETING_OVERLAP": "30", "UNRELATED": "x"}
    from_env = load(IngestSettings, env)
    assert (from_env.batch_rows, from_env.overlap) == (5000, timedelta(minutes=30))
    overridden = load(IngestSettings, env, parse_variable('{"batch_rows": 7}'))
    assert overridden.batch_rows == 7 and overridden.overlap == timedelta(minutes=30)


def test_settings_variable_must_be_an_object():
    assert parse_variable(None) == {}
    with pytest.raises(ValueError, match="JSON object"):
        parse_variable("[1, 2]")
