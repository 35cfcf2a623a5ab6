"""The order API across machines, played on one: three workers on 127.0.0.1, 127.0.0.2 and 127.0.0.3, all
on one port, as three hosts would run them. Each answers for all; one that stops is named by the
others until the group has moved its partitions; a worker advertising another's URL is refused."""
from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.worker.clock import wall_ms
from orderflow.streams.worker.shell import STOPPED_EXIT_STATUS
from support.live import WorkerProcess, common_free_port, run, wait_for
from support.orders import HOUR, created
from support.reliability import frozen_clock, publish_events

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


PORT = common_free_port(ADDRESSES + ("127.0.0.4",))
PARTITIONS = 6
ORDERS = 40


def get(address: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{address}:{PORT}{path}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, ConnectionError) as error:  # not serving (yet, or any more)
        return 0, {"error": str(error)}


def all_ids(address: str) -> list[str]:
    ids, cursor = [], None
    while True:
        status, page = get(address, "/orders?limit=7" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        ids += [order["order_id"] for order in page["orders"]]
        if not (cursor := page["next_cursor"]):
            return ids


def settled(addresses) -> bool:
    """Every worker ready, and together they hold each partition once."""
    answers = [get(address, "/ready") for address in addresses]
    assigned = [p for status, body in answers if status == 200 for p in body["assigned"]]
    return len(answers) == sum(status == 200 for status, _ in answers) and sorted(assigned) == list(range(PARTITIONS))


def test_three_workers_on_three_loopback_addresses_answer_for_all_and_name_one_that_stopped(own_broker, tmp_path):
    origin = wall_ms()
    run(ensure_topics({"bootstrap_servers": own_broker.bootstrap}, topics.ALL_TOPICS, PARTITIONS, 1))
    run(publish_events(own_broker.bootstrap, [created(f"fan-{n:02}", origin - HOUR + n) for n in range(ORDERS)]))
    workers = {address: WorkerProcess(own_broker.bootstrap, tmp_path / f"worker-{n}", web_bind=address,
                                      web_port=str(PORT), partitions=str(PARTITIONS), clock=frozen_clock(origin))
               for n, address in enumerate(ADDRESSES, 1)}
    try:
        wait_for(lambda: settled(ADDRESSES), 120, "three workers sharing the partitions")
        wanted = [f"fan-{n:02}" for n in range(ORDERS)]
        for address in ADDRESSES:
            wait_for(lambda: get(address, "/orders/counts")[1].get("total") == ORDERS, 60, f"{address}'s count")
            assert get(address, "/orders/counts")[1]["statuses"]["UNPAID"] == ORDERS
            assert sorted(all_ids(address)) == wanted  # every order once, through the cursors
            for order_id in ("fan-00", "fan-17", "fan-39"):  # owned here or elsewhere
                assert get(address, f"/orders/{order_id}")[0] == 200

        # Killed, the third stays in the group until its session times out: the others say so.
        workers["127.0.0.3"].process.send_signal(signal.SIGKILL)
        workers["127.0.0.3"].process.wait(30)
        status, body = get("127.0.0.1", "/orders/counts")
        assert status == 502 and f"worker http://127.0.0.3:{PORT} did not answer" in body["error"], body
        # Once the group has moved its partitions, the two left answer for all again.
        left = ADDRESSES[:2]
        wait_for(lambda: settled(left), 120, "two workers taking over")
        for address in left:
            wait_for(lambda: get(address, "/orders/counts")[1].get("total") == ORDERS, 60, f"{address}'s count")
            assert sorted(all_ids(address)) == wanted
    finally:
        for worker in workers.values():
            worker.stop()


def test_a_worker_advertising_another_s_url_is_refused(own_broker, tmp_path):
    """Two members with one URL: the group's table map keeps one of them under it, the other stops."""
    run(ensure_topics({"bootstrap_servers": own_broker.bootstrap}, topics.ALL_TOPICS, PARTITIONS, 1))
    first = WorkerProcess(own_broker.bootstrap, tmp_path / "first", web_bind="127.0.0.1", web_port=str(PORT),
                          partitions=str(PARTITIONS))
    second = WorkerProcess(own_broker.bootstrap, tmp_path / "second", web_bind="127.0.0.4", web_port=str(PORT),
                           partitions=str(PARTITIONS), web_advertise="127.0.0.1")
    try:
        stopped = wait_for(lambda: [w for w in (first, second) if w.process.poll() is not None], 120,
                           "one of them stopping")
        assert len(stopped) == 1 and stopped[0].process.returncode == STOPPED_EXIT_STATUS
        assert (f"another worker of the group advertises this worker's URL http://127.0.0.1:{PORT}"
                in stopped[0].log())
    finally:
        for worker in (first, second):
            worker.stop()
