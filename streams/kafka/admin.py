"""Kafka client settings from the Config, and creation of the registry's topics."""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context

from orderflow.streams.config import Config
from orderflow.streams.kafka.topics import TopicSpec

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The SASL mechanisms a username and password configure (GSSAPI and OAUTHBEARER need more).
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class TopicError(RuntimeError):
    """A topic could not be created, or exists with another partition count than planned."""


def client_settings(config: Config) -> dict[str, Any]:
    """aiokafka keyword arguments (producer, consumer, admin) for ``config.broker``.

    The embedded profile has no broker address in the config: pass
    ``dataclasses.replace(config, broker=embedded.bootstrap)``.
    """
    if not config.broker:
        raise ValueError("no broker address: set broker, or start the embedded broker and use its bootstrap")
    protocol = config.security_protocol.upper()
    if protocol not in _PROTOCOLS:
        raise ValueError(f"unknown security_protocol {config.security_protocol!r}; use one of {', '.join(_PROTOCOLS)}")
    settings: dict[str, Any] = {"bootstrap_servers": config.broker, "security_protocol": protocol}

    if protocol.startswith("SASL_"):
        mechanism = config.sasl_mechanism.upper()
        if mechanism not in _MECHANISMS:
            raise ValueError(f"security_protocol {protocol} needs sasl_mechanism, one of {', '.join(_MECHANISMS)}; "
                             f"got {config.sasl_mechanism!r}")
        if not (config.sasl_username and config.sasl_password):
            raise ValueError(f"sasl_mechanism {mechanism} needs sasl_username and sasl_password")
        settings.update(sasl_mechanism=mechanism, sasl_plain_username=config.sasl_username,
                        sasl_plain_password=config.sasl_password)
    elif config.sasl_mechanism or config.sasl_username or config.sasl_password:
        # Silently ignored credentials would only show up later as an unexplained connection failure.
        raise ValueError(f"SASL settings are set but security_protocol is {protocol}; use SASL_PLAINTEXT or SASL_SSL")

    if protocol.endswith("SSL"):
        settings["ssl_context"] = _ssl_context(config.ssl_cafile)
    elif config.ssl_cafile:
        raise ValueError(f"ssl_cafile is set but security_protocol is {protocol}; use SSL or SASL_SSL")
    return settings


def _ssl_context(cafile: str) -> ssl.SSLContext:
    """Verifying TLS context: the CA bundle in ``cafile``, or the system's trust store if empty."""
    if not cafile:
        return create_ssl_context()
    if not Path(cafile).is_file():
        raise ValueError(f"ssl_cafile {cafile!r} is not a file")
    try:
        return create_ssl_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise ValueError(f"ssl_cafile {cafile!r} holds no usable PEM CA certificate: {exc}") from exc


async def ensure_topics(
    bootstrap_settings: dict[str, Any], specs: Iterable[TopicSpec], partitions: int, replication: int,
) -> list[str]:
    """Create the missing topics with ``partitions`` partitions; return the names created.

    Raises TopicError if a topic exists with another partition count: keyed
    topics read together must be co-partitioned, and Kafka cannot shrink a topic.
    """
    specs = list(specs)
    names = [spec.name for spec in specs]
    admin = AIOKafkaAdminClient(**bootstrap_settings)
    try:
        await admin.start()
        # List all topics rather than naming ours: a metadata request for an
        # unknown topic auto-creates it (Tansu always, Kafka by default).
        existing = set(await admin.list_topics())
        created: list[str] = []
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            response = await admin.create_topics([NewTopic(spec.name, partitions, replication,
                                                           topic_configs=dict(spec.configs)) for spec in missing])
            for name, code, *message in response.topic_errors:  # CreateTopics v1+ adds a message
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:  # else created concurrently: checked below
                    detail = f": {message[0]}" if message and message[0] else ""
                    raise TopicError(f"cannot create topic {name!r}: {for_code(code).__name__}{detail}")
        to_check = [name for name in names if name not in created]
        mismatched = [
            f"{topic['topic']} has {len(topic['partitions'])}"
            for topic in (await admin.describe_topics(to_check) if to_check else [])
            if len(topic["partitions"]) != partitions
        ]
    finally:
        await admin.close()
    if mismatched:
        raise TopicError(
            f"topics exist with another partition count than the planned {partitions}: {'; '.join(mismatched)}. "
            "Co-partitioned topics would route one key to different partitions; "
            "recreate the topics or set partitions to match.")
    return created
