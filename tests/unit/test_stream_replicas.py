"""What provisioning sends for an existing stream: its declared settings, replicas never lowered."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from nats.js import api

from events.streams import (
    DUPLICATE_WINDOW_S,
    EVENTS_STREAM,
    REPLICAS_ENV,
    kept_replicas,
    logs_stream_config,
    replicas_from_env,
    stream_configs,
    stream_update,
)


def _events(replicas: int) -> api.StreamConfig:
    return dataclasses.replace(stream_configs()[0], num_replicas=replicas)


def _as_server_has_it(config: api.StreamConfig) -> api.StreamConfig:
    """What stream_info returns: defaults filled in, extra settings of its own."""
    return dataclasses.replace(
        config,
        max_age=config.max_age or 0.0,
        duplicate_window=config.duplicate_window or DUPLICATE_WINDOW_S,
        description="kept by the operator",
        max_consumers=-1,
        max_msgs=-1,
    )


def test_an_unchanged_stream_is_not_updated() -> None:
    wanted = _events(1)
    assert stream_update(_as_server_has_it(wanted), wanted) is None
    logs = dataclasses.replace(logs_stream_config("blue", 1), num_replicas=1)
    assert stream_update(_as_server_has_it(logs), logs) is None  # duplicate window 0 is the default


def test_r3_is_never_lowered_by_provisioning(caplog: pytest.LogCaptureFixture) -> None:
    existing = _as_server_has_it(_events(3))
    with caplog.at_level(logging.WARNING):
        assert stream_update(existing, _events(1)) is None
    assert "jobstream streams replicas 1 --yes" in caplog.text and EVENTS_STREAM in caplog.text
    # A changed setting is sent with the replicas the stream has, and its other settings kept.
    changed = dataclasses.replace(_events(1), max_bytes=1000)
    update = stream_update(existing, changed)
    assert update is not None
    assert (update.num_replicas, update.max_bytes, update.description) == (3, 1000, "kept by the operator")


def test_replicas_are_raised_and_other_settings_kept() -> None:
    update = stream_update(_as_server_has_it(_events(1)), _events(3))
    assert update is not None and update.num_replicas == 3 and update.description == "kept by the operator"


def test_a_declared_setting_changed_by_hand_is_put_back() -> None:
    existing = dataclasses.replace(_as_server_has_it(_events(1)), max_age=3600.0, allow_direct=False)
    update = stream_update(existing, _events(1))
    assert update is not None and update.max_age is None and update.allow_direct is True  # None: forever


def test_kept_replicas() -> None:
    assert kept_replicas(None, 1) == 1
    assert kept_replicas(1, 3) == 3
    assert kept_replicas(3, 1) == 3
    assert kept_replicas(3, 5) == 5


@pytest.mark.parametrize(("value", "expected"), [("", 1), ("1", 1), (" 3 ", 3), ("5", 5)])
def test_replicas_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    monkeypatch.setenv(REPLICAS_ENV, value)
    assert replicas_from_env() == expected


@pytest.mark.parametrize("value", ["0", "6", "-1", "three", "2.5"])
def test_bad_replicas_name_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REPLICAS_ENV, value)
    with pytest.raises(ValueError, match=REPLICAS_ENV):
        replicas_from_env()


def test_what_a_starting_jetstream_answers_is_waited_out_and_nothing_else() -> None:
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.js.errors import APIError, BadRequestError, ServiceUnavailableError

    from events.streams import not_ready_yet

    assert not_ready_yet(ServiceUnavailableError())  # nats-py's bare 503: no code at all
    assert (
        not_ready_yet(NoRespondersError())
        and not_ready_yet(NatsTimeoutError())
        and not_ready_yet(TimeoutError())
    )
    assert not_ready_yet(APIError(code=503, err_code=10008, description="temporarily unavailable"))
    assert not_ready_yet(APIError(code=500, err_code=10023, description="insufficient resources"))
    assert not not_ready_yet(BadRequestError(code=400, err_code=10052, description="bad config"))
    assert not not_ready_yet(ValueError("a bug"))
