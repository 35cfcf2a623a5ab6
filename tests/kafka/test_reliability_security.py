"""Kafka SASL and TLS through configuration (issue 6, item 5: the Kafka client part).

The CLI's clients take their settings from `admin.client_settings`; the worker's
Faust app from `worker.shell.faust_settings`, whose credentials Faust's aiokafka driver
turns into the client's keyword arguments. Both paths must say the same thing
for the same configuration, read from the environment or a TOML file, and a
configured CA bundle must really be the one TLS verifies against.
"""
from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from orderflow.streams.config import load_config
from orderflow.streams.kafka.admin import client_settings
from orderflow.streams.worker.shell import faust_settings

SECRET = "s3cret-Passw0rd"


def _worker_client_settings(config) -> dict:
    """What the worker's Kafka clients get: Faust's credentials, as its aiokafka driver passes them on."""
    return dict(credentials_to_aiokafka_auth(faust_settings(config)["broker_credentials"]))


@pytest.mark.parametrize("protocol, mechanism", [
    ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "PLAIN"),
])
def test_sasl_from_the_environment_reaches_the_cli_and_the_worker_clients_alike(tmp_path, protocol, mechanism):
    env = {"ORDERFLOW_BROKER": "kafka1:9093,kafka2:9093", "ORDERFLOW_SECURITY_PROTOCOL": protocol.lower(),
           "ORDERFLOW_SASL_MECHANISM": mechanism.lower(), "ORDERFLOW_SASL_USERNAME": "orderflow",
           "ORDERFLOW_SASL_PASSWORD": SECRET, "ORDERFLOW_DATA_DIR": str(tmp_path / "data")}
    config = load_config(tmp_path / "none.toml", env)
    cli = client_settings(config)
    worker = _worker_client_settings(config)

    assert cli["bootstrap_servers"] == "kafka1:9093,kafka2:9093"
    assert faust_settings(config)["broker"] == ["kafka://kafka1:9093", "kafka://kafka2:9093"]
    for settings in (cli, worker):
        assert settings["security_protocol"] == protocol
        assert settings["sasl_mechanism"] == mechanism
        assert (settings["sasl_plain_username"], settings["sasl_plain_password"]) == ("orderflow", SECRET)
        context = settings.get("ssl_context")
        if protocol == "SASL_SSL":
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        else:
            assert context is None
    # The password stays out of what gets printed or logged about the settings.
    assert SECRET not in repr(config)
    assert SECRET not in repr(faust_settings(config)["broker_credentials"])


def test_tls_from_a_config_file(tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
                       if Path("/etc/ssl/certs/ca-certificates.crt").exists() else b"")
    if not cafile.read_bytes():
        pytest.skip("no system CA bundle to copy")
    config_file = tmp_path / "orderflow.toml"
    config_file.write_text(f'[orderflow]\nbroker = "kafka:9093"\nsecurity_protocol = "SSL"\nssl_cafile = "{cafile}"\n'
                           f'data_dir = "{tmp_path / "data"}"\n')
    config = load_config(config_file, {})
    cli = client_settings(config)
    worker = _worker_client_settings(config)
    assert cli["security_protocol"] == worker["security_protocol"] == "SSL"
    for settings in (cli, worker):
        assert settings["ssl_context"].verify_mode == ssl.CERT_REQUIRED
        assert settings["ssl_context"].get_ca_certs()  # the bundle's certificates are loaded
        assert "sasl_mechanism" not in settings


def test_plaintext_is_the_default_and_has_no_credentials(tmp_path):
    config = load_config(tmp_path / "none.toml", {"ORDERFLOW_BROKER": "kafka:9092"})
    assert client_settings(config) == {"bootstrap_servers": "kafka:9092", "security_protocol": "PLAINTEXT"}
    assert faust_settings(config)["broker_credentials"] is None
    assert _worker_client_settings(config) == {"security_protocol": "PLAINTEXT"}


def test_inconsistent_security_settings_are_refused_before_any_client_is_built(tmp_path):
    env = {"ORDERFLOW_BROKER": "kafka:9092", "ORDERFLOW_SASL_USERNAME": "u", "ORDERFLOW_SASL_PASSWORD": "p"}
    config = load_config(tmp_path / "none.toml", env)
    with pytest.raises(ValueError, match="security_protocol is PLAINTEXT"):
        client_settings(config)
    with pytest.raises(ValueError, match="security_protocol is PLAINTEXT"):
        faust_settings(config)  # the worker refuses the same configuration


# --- the configured CA is the one TLS trusts ----------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_ca(tmp_path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1, server key): a CA no system trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=orderflow test CA", cwd=tmp_path)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=tmp_path)
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.cnf", cwd=tmp_path)
    return tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"


async def _handshake(client_context: ssl.SSLContext, server_cert: Path, server_key: Path) -> str:
    """TLS handshake with a local server presenting `server_cert`; returns 'ok' or the client's error."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(server_cert, server_key)

    async def serve(reader, writer):
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_context, server_hostname="127.0.0.1"), 10)
        writer.close()
        return "ok"
    except ssl.SSLCertVerificationError as exc:
        return f"verify failed: {exc.verify_message}"
    finally:
        server.close()


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_the_configured_ca_file_is_what_tls_verifies_against(tmp_path, private_ca, protocol):
    ca, server_cert, server_key = private_ca
    sasl = {"ORDERFLOW_SASL_MECHANISM": "SCRAM-SHA-512", "ORDERFLOW_SASL_USERNAME": "u",
            "ORDERFLOW_SASL_PASSWORD": "p"} if protocol == "SASL_SSL" else {}
    base = {"ORDERFLOW_BROKER": "127.0.0.1:9093", "ORDERFLOW_SECURITY_PROTOCOL": protocol, **sasl}
    with_ca = load_config(tmp_path / "none.toml", {**base, "ORDERFLOW_SSL_CAFILE": str(ca)})
    system = load_config(tmp_path / "none.toml", base)

    for settings in (client_settings(with_ca), _worker_client_settings(with_ca)):
        assert asyncio.run(_handshake(settings["ssl_context"], server_cert, server_key)) == "ok"
    # Without the CA file the system trust store is used, and it does not know this CA.
    refused = asyncio.run(_handshake(client_settings(system)["ssl_context"], server_cert, server_key))
    assert refused.startswith("verify failed"), refused
