from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from orderflow.streams.config import Config
from orderflow.streams.kafka.broker import EmbeddedBroker, broker_binary


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the whole session; its log sits in pytest's temp dir."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(broker_binary(Config()), log_path=log_path) as embedded:
        yield embedded


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Topic names unique per call, so tests sharing the session broker never collide."""
    test = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80]
    return lambda base: f"{base}-{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker for one test: its workers see no other test's topics, offsets or state."""
    with EmbeddedBroker(broker_binary(Config()), log_path=tmp_path / "tansu.log") as embedded:
        yield embedded
