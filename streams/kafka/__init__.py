"""Kafka plumbing: the topic registry, the codec, client settings and topics, the embedded broker, publishing."""
