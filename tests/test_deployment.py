"""The deployment files as someone would copy them: docker-compose.yml parsed, the Dockerfile read, and
the image's entry point run as its shell would run it."""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from orderflow.streams.config import Config
from orderflow.streams.kafka import topics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_compose_file_builds_the_image_creates_the_registry_s_topics_then_runs_ready_checked_workers():
    services = COMPOSE["services"]
    assert set(services) == {"kafka", "topics", "worker"}
    topics_job, worker = services["topics"], services["worker"]
    assert topics_job["build"] == worker["build"] == "." and topics_job["image"] == worker["image"]
    assert topics_job["command"] == ["topics", "--create"] and worker["command"] == ["run"]
    assert worker["depends_on"] == {"topics": {"condition": "service_completed_successfully"}}
    assert "http://127.0.0.1:6066/ready" in " ".join(worker["healthcheck"]["test"])
    assert worker["ports"] == [str(Config().web_port)]
    assert worker["environment"]["ORDERFLOW_API_TOKEN"].startswith("${ORDERFLOW_API_TOKEN:?")


def test_the_compose_file_names_no_topic_it_would_have_to_keep_in_step_with_the_registry():
    text = (ROOT / "docker-compose.yml").read_text()
    assert not [spec.name for spec in topics.ALL_TOPICS if spec.name in text]


def test_the_dockerfile_copies_every_package_and_exposes_the_api_port():
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    copied = set(re.findall(r"^COPY (\w+) \1$", DOCKERFILE, re.M))
    assert copied == set(package_dirs)
    assert re.search(rf"^EXPOSE {Config().web_port}$", DOCKERFILE, re.M)
    assert "ORDERFLOW_WEB_BIND=0.0.0.0" in DOCKERFILE  # hence the token the compose file requires


def test_the_entry_point_advertises_the_container_s_address_unless_told_and_passes_the_command_on():
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M).group(1))
    assert entrypoint[:2] == ["/bin/sh", "-c"] and "exec orderflow" in entrypoint[2]
    shown = [entrypoint[0], entrypoint[1], entrypoint[2].replace("exec orderflow", "exec env"), *entrypoint[3:]]

    def run(env: dict) -> dict:
        out = subprocess.run([*shown, "ARGS=passed"], env=env, capture_output=True, text=True, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    default = run({"PATH": "/usr/bin:/bin"})
    ipaddress.ip_address(default["ORDERFLOW_WEB_ADVERTISE"])  # the container's address
    assert default["ARGS"] == "passed"
    assert run({"PATH": "/usr/bin:/bin", "ORDERFLOW_WEB_ADVERTISE": "worker-7"})["ORDERFLOW_WEB_ADVERTISE"] == "worker-7"
