"""The deployment files: they parse, agree with the Makefile, and query metrics that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from prometheus_client import REGISTRY, Metric

import stepper.infra.metrics
from stepper.ops.exporter import FleetCollector

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def yaml_documents(path: Path) -> list[dict[str, object]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(files) >= 6
    for path in files:
        assert yaml_documents(path), path


def test_compose_runs_each_profile_on_a_durable_redis() -> None:
    compose = yaml_documents(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert isinstance(services, dict)
    commands = {name: service.get("command") for name, service in services.items()}
    for profile in ("llm", "cpu", "ops"):
        assert commands[f"worker-{profile}"] == ["worker", "--profile", profile]
    redis_command = " ".join(commands["redis"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert {"flower", "prometheus", "grafana", "exporter"} <= set(services)


def test_dockerfile_installs_what_the_makefile_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    wanted = set(re.search(r"^SYSTEM_PACKAGES := (.*)$", makefile, re.MULTILINE).group(1).split())  # type: ignore[union-attr]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installed = set(re.search(r"/tmp/system-deps.sh ([^&\\]+)", dockerfile).group(1).split())  # type: ignore[union-attr]
    assert installed == wanted - {"redis-server"}  # Redis runs as its own service
    languages = re.search(r"^OCR_LANGUAGES \?= (.*)$", makefile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]
    assert languages == ["eng", "deu", "fra", "ita", "spa", "por"]
    assert re.search(r'^ARG OCR_LANGUAGES="(.*)"$', dockerfile, re.MULTILINE).group(1).split() == languages  # type: ignore[union-attr]
    assert "USER stepper" in dockerfile


def metric_samples() -> set[str]:
    """Every sample name stepper can expose: its counters and histograms, and the fleet collector's gauges."""
    names: set[str] = set()
    families: list[Metric] = [family for family in REGISTRY.collect() if family.name.startswith("stepper_")]
    for family in families:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}

    class NoFleet:
        class conf:
            task_queues: ClassVar[list[object]] = []

    class NoRedis:
        def ping(self) -> bool:
            raise ConnectionError("not needed")

    # With Redis unreachable the collector still describes every family it serves.
    return names | {family.name for family in FleetCollector(NoFleet(), NoRedis()).collect()}


def test_every_metric_the_dashboard_queries_exists() -> None:
    assert stepper.infra.metrics.TASKS is not None  # the module's metrics are registered on import
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "stepper.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bstepper_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= metric_samples(), queried - metric_samples()


def test_keda_reads_the_depth_the_exporter_serves() -> None:
    for scaled in yaml_documents(DEPLOY / "k8s" / "keda.yaml"):
        for trigger in scaled["spec"]["triggers"]:  # type: ignore[index]
            assert "stepper_queue_depth" in trigger["metadata"]["query"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")
def test_docker_compose_accepts_the_file() -> None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("docker is here but its compose plugin is not")
    env = {**os.environ, "STEPPER_FLOWER_USER": "u", "STEPPER_FLOWER_PASSWORD": "p"}
    done = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_ha_compose_runs_three_rabbitmq_nodes_and_a_sentinel_managed_state() -> None:
    from stepper.brokers import broker_kind, parse_sentinel_url
    from stepper.config import load_config

    services = yaml_documents(DEPLOY / "compose.ha.yaml")[0]["services"]
    assert isinstance(services, dict)
    assert {f"rabbitmq-{n}" for n in (1, 2, 3)} <= set(services)
    assert sum("--sentinel" in " ".join(service.get("command", [])) for service in services.values()) == 3
    for profile in ("llm", "cpu", "ops"):
        environment = services[f"worker-{profile}"]["environment"]
        assert environment["STEPPER_RABBITMQ_QUEUE_TYPE"] == "quorum"
        brokers = environment["STEPPER_BROKER_URL"].split(";")
        assert len(brokers) == 3 and all(broker_kind(url) == "amqp" for url in brokers)
        state = parse_sentinel_url(environment["STEPPER_STATE_REDIS_URL"])
        assert len(state.sentinels) == 3 and state.master_name == "stepper-state"
        # The worker would load exactly this: the three connections resolve without a Redis broker.
        loaded = load_config({**environment, "CELERY_CONFIG_MODULE": "stepper_tests_no_such_config_module"})
        assert loaded["broker_transport_options"]["confirm_publish"] is True
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert all(f"rabbit@rabbitmq-{n}" in conf for n in (1, 2, 3))


def test_keda_scales_each_profile_on_every_rabbitmq_queue_it_consumes() -> None:
    from stepper.workers.profiles import PROFILES

    documents = yaml_documents(DEPLOY / "k8s" / "keda-rabbitmq.yaml")
    scaled = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "ScaledObject"}  # type: ignore[index]
    for name, profile in PROFILES.items():
        triggers = scaled[f"stepper-{name}"]["spec"]["triggers"]  # type: ignore[index]
        assert {trigger["metadata"]["queueName"] for trigger in triggers} == set(profile.queues)
        assert all(
            trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength" for trigger in triggers
        )
    (cluster,) = yaml_documents(DEPLOY / "k8s" / "rabbitmq.yaml")
    assert cluster["kind"] == "RabbitmqCluster" and cluster["spec"]["replicas"] == 3  # type: ignore[index]
    values = yaml_documents(DEPLOY / "k8s" / "redis-state-values.yaml")[0]
    assert values["sentinel"]["enabled"] is True  # type: ignore[index]
    assert "maxmemory-policy noeviction" in values["commonConfiguration"]  # type: ignore[operator]
