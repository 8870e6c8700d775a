"""NATS_URL is one URL or a comma-separated list (a cluster's nodes); a bad one is named."""

from __future__ import annotations

import pytest

from services.runtime.connect import NatsUrlError, nats_servers, without_password


def test_one_url() -> None:
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_a_list_with_spaces_and_logins() -> None:
    url = " nats://jobstream:pw@127.0.0.1:4222 , nats://jobstream:pw@127.0.0.2:4222,127.0.0.3:4222 "
    assert nats_servers(url) == [
        "nats://jobstream:pw@127.0.0.1:4222",
        "nats://jobstream:pw@127.0.0.2:4222",
        "127.0.0.3:4222",
    ]
    assert nats_servers("tls://a.example:4222,wss://b.example") == ["tls://a.example:4222", "wss://b.example"]


@pytest.mark.parametrize("url", ["", "  ", ",", " , "])
def test_empty_names_the_setting(url: str) -> None:
    with pytest.raises(NatsUrlError, match="NATS_URL is empty"):
        nats_servers(url)


@pytest.mark.parametrize("url", ["nats://a:4222,,nats://b:4222", "nats://a:4222,", ",nats://a:4222"])
def test_an_empty_item_is_named(url: str) -> None:
    with pytest.raises(NatsUrlError, match="NATS_URL has an empty item"):
        nats_servers(url)


@pytest.mark.parametrize(
    "url", ["http://a:4222", "nats://", "nats://a:port", "nats://jobstream:secret@a:99999"]
)
def test_a_bad_item_is_named_without_its_password(url: str) -> None:
    with pytest.raises(NatsUrlError, match="NATS_URL item 1") as caught:
        nats_servers(url)
    assert "secret" not in str(caught.value)


def test_the_setting_named_is_the_one_given() -> None:
    with pytest.raises(NatsUrlError, match="--nats-url is empty"):
        nats_servers("", setting="--nats-url")


def test_without_password_keeps_every_node() -> None:
    assert without_password("nats://u:p@a:1,nats://u:p@b:2") == "nats://a:1,nats://b:2"
