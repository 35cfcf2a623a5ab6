"""The order API over HTTPS between workers: each worker serves its certificate, checks its peers'
against the configured CA, and sends them the token over TLS only. Two workers on 127.0.0.1 and
127.0.0.2 share one port, as two hosts would; a third whose certificate another CA signed joins
and is named as not answering, rather than trusted or left out."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import trustme

from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.worker.clock import wall_ms
from support.live import WorkerProcess, common_free_port, run, wait_for
from support.orders import HOUR, created
from support.reliability import frozen_clock, publish_events

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
PORT = common_free_port(ADDRESSES)
PARTITIONS = 4
ORDERS = 30
TOKEN = "https-test-token"


def get(address: str, path: str, tls: ssl.SSLContext, scheme: str = "https") -> tuple[int, dict]:
    request = urllib.request.Request(f"{scheme}://{address}:{PORT}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=tls if scheme == "https" else None) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, ConnectionError) as error:  # not serving (yet, or not this way)
        return 0, {"error": str(error)}


def files(ca: trustme.CA, tmp_path, name: str) -> dict[str, str]:
    """A certificate for every loopback address the test uses, with its key, as PEM files."""
    cert = ca.issue_cert(*ADDRESSES, "localhost")
    chain, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    return {"web_cert": str(chain), "web_key": str(key)}


def test_workers_answer_for_all_over_https_and_name_a_peer_whose_certificate_the_ca_did_not_sign(own_broker,
                                                                                                   tmp_path):
    ca, stranger_ca = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ssl.create_default_context(cafile=str(ca_file))
    origin = wall_ms()
    run(ensure_topics({"bootstrap_servers": own_broker.bootstrap}, topics.ALL_TOPICS, PARTITIONS, 1))
    run(publish_events(own_broker.bootstrap, [created(f"tls-{n:02}", origin - HOUR + n) for n in range(ORDERS)]))
    common = dict(web_port=str(PORT), partitions=str(PARTITIONS), clock=frozen_clock(origin), api_token=TOKEN,
                  peer_ca=str(ca_file))
    workers = [WorkerProcess(own_broker.bootstrap, tmp_path / f"worker-{n}", web_bind=address,
                             **files(ca, tmp_path, f"worker-{n}"), **common)
               for n, address in enumerate(ADDRESSES[:2], 1)]
    try:
        def settled(addresses) -> bool:
            answers = [get(address, "/ready", client) for address in addresses]
            assigned = sorted(p for status, body in answers if status == 200 for p in body["assigned"])
            return all(status == 200 for status, _ in answers) and assigned == list(range(PARTITIONS))

        wait_for(lambda: settled(ADDRESSES[:2]), 120, "two workers sharing the partitions")
        for address in ADDRESSES[:2]:
            wait_for(lambda: get(address, "/orders/counts", client)[1].get("total") == ORDERS, 60,
                     f"{address}'s count over HTTPS")
            status, page = get(address, "/orders?limit=500", client)
            assert status == 200 and sorted(o["order_id"] for o in page["orders"]) == [f"tls-{n:02}"
                                                                                       for n in range(ORDERS)]
            # Nothing is served in clear: a plain HTTP request gets no answer.
            assert get(address, "/orders/counts", client, scheme="http")[0] != 200

        # A member whose certificate another CA signed: the others do not take its answers (nor send it
        # their token): they name it until it leaves.
        workers.append(WorkerProcess(own_broker.bootstrap, tmp_path / "stranger", web_bind=ADDRESSES[2],
                                     **files(stranger_ca, tmp_path, "stranger"), **common))
        stranger_ca.cert_pem.write_to_path(str(tmp_path / "stranger-ca.pem"))
        stranger_client = ssl.create_default_context(cafile=str(tmp_path / "stranger-ca.pem"))
        wait_for(lambda: get(ADDRESSES[2], "/ready", stranger_client)[0] == 200, 120, "the stranger ready")

        def named() -> dict | None:
            status, body = get(ADDRESSES[0], "/orders/counts", client)
            return body if status == 502 else None
        body = wait_for(named, 60, "the stranger named")
        assert f"worker https://{ADDRESSES[2]}:{PORT} did not answer" in body["error"], body
        assert "certificate" in body["error"].lower(), body
    finally:
        for worker in workers:
            worker.stop()

