"""`up`'s choices for its NATS nodes: replicas, store kind, ports; broker-auth's reload rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.broker.main import stale
from services.cli.up import UpError, UpOptions, _check_store_kind, _replicas, cluster_ports


@pytest.fixture(autouse=True)
def _no_replicas_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBSTREAM_REPLICAS", raising=False)


def test_replicas_default_to_1_alone_and_3_in_a_cluster() -> None:
    assert _replicas(UpOptions()) == 1
    assert _replicas(UpOptions(cluster=3)) == 3
    assert _replicas(UpOptions(cluster=3, replicas=1)) == 1


def test_replicas_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSTREAM_REPLICAS", "3")
    assert _replicas(UpOptions(cluster=5)) == 3
    assert _replicas(UpOptions(nats_url="nats://a:4222,nats://b:4222,nats://c:4222")) == 3
    monkeypatch.setenv("JOBSTREAM_REPLICAS", "x")
    with pytest.raises(UpError, match="JOBSTREAM_REPLICAS"):
        _replicas(UpOptions())


def test_more_replicas_than_nodes_is_refused() -> None:
    with pytest.raises(UpError, match="--cluster 3"):
        _replicas(UpOptions(replicas=3))


def test_a_data_dir_keeps_its_kind_of_store(tmp_path: Path) -> None:
    (tmp_path / "nats" / "jetstream").mkdir(parents=True)
    _check_store_kind(UpOptions(), tmp_path)
    with pytest.raises(UpError, match="single-node store"):
        _check_store_kind(UpOptions(cluster=3), tmp_path)
    other = tmp_path / "other"
    (other / "nats-n1").mkdir(parents=True)
    with pytest.raises(UpError, match="--cluster"):
        _check_store_kind(UpOptions(), other)


def test_cluster_ports_are_distinct_and_kept(tmp_path: Path) -> None:
    opts = UpOptions(cluster=3)
    clients, routes = cluster_ports(opts, tmp_path, 14222)
    assert clients[0] == 14222 and len(set(clients + routes)) == 6
    assert cluster_ports(opts, tmp_path, 14222) == (clients, routes)


def test_broker_auth_reloads_a_node_whose_pid_changed(tmp_path: Path) -> None:
    files = [tmp_path / "n1.pid", tmp_path / "n2.pid"]
    files[0].write_text("100\n")
    files[1].write_text("200\n")
    assert stale(files, None)
    assert not stale(files, (100, 200))
    files[1].write_text("201\n")  # n2 restarted
    assert stale(files, (100, 200))
    files[1].unlink()  # n2 starting: nothing to reload yet
    assert not stale(files, (100, 200))
    assert not stale(os.getpid(), (os.getpid(),))
