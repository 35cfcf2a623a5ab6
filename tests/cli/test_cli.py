"""The `orderflow` command line as a user runs it: the real entry point, a real broker where Kafka is involved.

Kafka tests share the session broker with other tests, so every order and event
id here carries a per-test unique prefix and what is read back is filtered by it.
The one test that runs a worker (`orderflow run`) gets a broker of its own.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from click.testing import CliRunner

import orderflow.streams.lifecycle
from orderflow.streams.cli.commands import main
from orderflow.streams.cli.simulator import Mix, Simulator
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.lifecycle import Policy, contract
from orderflow.streams.worker.clock import wall_ms
from support.live import WorkerProcess, read_outputs, run
from support.orders import DAY, HOUR, MIN, T0, cancel_response, created, event, paid
from support.replays import replayed

UNTIL_ISO = "2026-11-20T12:00:00Z"
UNTIL_MS = 1_795_176_000_000  # the same instant in UTC milliseconds
SAMPLE_START_ISO = "2026-11-20T00:00:00Z"
SAMPLE_START_MS = 1_795_132_800_000
PACKAGED_POLICY = Path(orderflow.streams.lifecycle.__file__).parent / "region_policy.toml"

SUMMARY = re.compile(r"published (\d+) events; (\d+) invalid lines skipped")
TALLY = re.compile(r"events in=(\d+) applied=(\d+) dead_lettered=(\d+) duplicates=(\d+) held=(\d+) "
                   r"after_until=(\d+); orders=(\d+)")
REPORT = re.compile(r"^line (\d+): (.+)$", re.M)
KIND_OF_TOPIC = {spec.name: kind for kind, spec in topics.OUTPUT_TOPICS.items()}


# --- running the command ---------------------------------------------------------------------------------------

def orderflow(*args, cwd: Path, env: dict | None = None, input: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess:
    """`orderflow ARGS` in a subprocess: no ORDERFLOW_* settings but `env`, and no config file (cwd is a temp dir)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    return subprocess.run([sys.executable, "-m", "orderflow.streams", *map(str, args)], cwd=cwd,
                          env={**clean, **(env or {})}, input=input, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """click's CliRunner on `main`, in a temp dir without config file or ORDERFLOW_* settings."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("ORDERFLOW_")]:
        monkeypatch.delenv(name)
    runner = CliRunner()
    return lambda *args, **kw: runner.invoke(main, [str(a) for a in args], prog_name="orderflow", **kw)


def write_lines(path: Path, lines: list) -> Path:
    """A JSON-lines file: dicts are dumped, strings written as they are."""
    path.write_text("".join((json.dumps(x, ensure_ascii=False) if isinstance(x, dict) else x) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- Kafka -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bootstrap(broker) -> str:
    """The session broker with orderflow's topics created (as `orderflow run` would)."""
    asyncio.run(ensure_topics({"bootstrap_servers": broker.bootstrap}, topics.ALL_TOPICS, 4, 1))
    return broker.bootstrap


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


def unique(uid: str, events: list[dict]) -> list[dict]:
    """The events with order and event ids made unique to this test."""
    return [{**e, "event_id": f"cli-{uid}-{n}", "order_id": f"cli-{uid}-{e['order_id']}"}
            for n, e in enumerate(events, 1)]


async def _read_topic(bootstrap: str, spec: topics.TopicSpec, prefix: str) -> list[tuple[bytes, dict]]:
    """(key, decoded record) of every message now on the topic whose event_id starts with prefix, in partition order."""
    codec = codec_for_topic(spec)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(spec.name, p) for p in sorted(consumer.partitions_for_topic(spec.name) or ())]
        assert partitions, f"topic {spec.name} does not exist"
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found = []
        while any(position < ends[tp] for tp, position in [(tp, await consumer.position(tp)) for tp in partitions]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for m in records:
                    record = codec.decode(m.value)
                    if str(record.get("event_id", "")).startswith(prefix):
                        found.append((m.key, record))
        return found
    finally:
        await consumer.stop()


def read_order_events(bootstrap: str, prefix: str) -> list[tuple[bytes, dict]]:
    return asyncio.run(asyncio.wait_for(_read_topic(bootstrap, topics.ORDER_EVENTS, prefix), 30))


# --- 1. help and usage errors -------------------------------------------------------------------------------------

def test_top_level_help_describes_orderflow_and_lists_every_command(tmp_path):
    result = orderflow("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Usage:")
    assert "order lifecycle on Kafka" in out
    assert "ORDERFLOW_BROKER" in out and "--config" in out
    commands = out.split("Commands:", 1)[1]
    for name in ("run", "produce", "tail", "topics", "replay", "sample"):
        assert re.search(rf"^\s+{name}\s+\S", commands, re.M), f"{name} missing from:\n{commands}"


@pytest.mark.parametrize("command, words", [
    ("run", ["Run a worker", "deadlines", "--sample", "--for", "SECONDS"]),
    ("produce", ["FILE", "JSON lines", "stdin", "line number", "not sent"]),
    ("tail", ["TOPIC", "JSON lines", "--from-beginning", "--new-only", "--max", "--idle-timeout"]),
    ("topics", ["List the topics", "schemas"]),
    ("replay", ["EVENTS", "simulated clock", "--until", "ISO 8601", "--out", "--region-policy", "[required]"]),
    ("sample", ["sample traffic", "JSON lines", "--start", "ISO 8601"]),
])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_each_command_help_describes_the_command(cli, command, words, flag):
    result = cli(command, flag)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: orderflow {command} [OPTIONS]")
    text = " ".join(result.stdout.split())  # help is wrapped to the terminal width
    for word in words:
        assert word in text, f"{word!r} not in `{command} --help`:\n{result.stdout}"


def test_an_unknown_option_is_a_usage_error_through_the_real_entry_point(tmp_path):
    result = orderflow("--bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "Usage:" in result.stderr and "No such option: --bogus" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["replay", "--bogus"], "No such option: --bogus"),
    (["tail", "order-events", "--max", "many"], "'many' is not a valid integer"),
    (["tail", "order-events", "--idle-timeout", "soon"], "'soon' is not a valid float"),
    (["run", "--for", "ever"], "'ever' is not a valid float"),
    (["produce"], "Missing argument 'FILE'"),
    (["produce", "no-such-file.jsonl"], "No such file or directory"),
    (["replay", "no-such-file.jsonl", "--until", "0"], "No such file or directory"),
    (["tail"], "Missing argument 'TOPIC'"),
    (["sample", "extra"], "Got unexpected extra argument"),
])
def test_bad_usage_exits_2_with_a_message(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr and message in result.stderr, result.stderr


def test_a_missing_config_file_or_unreadable_setting_is_a_usage_error(tmp_path):
    missing = orderflow("topics", cwd=tmp_path, env={"ORDERFLOW_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.returncode == 2 and "nope.toml" in missing.stderr and "does not exist" in missing.stderr
    bad = orderflow("topics", cwd=tmp_path, env={"ORDERFLOW_PARTITIONS": "four"})
    assert bad.returncode == 2 and "partitions" in bad.stderr and "'four'" in bad.stderr
    (tmp_path / "orderflow.toml").write_text('[orderflow]\nbrokers = "x:9092"\n')
    unknown = orderflow("topics", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown settings ['brokers']" in unknown.stderr


def test_topics_lists_every_topic_with_its_schema(cli):
    result = cli("topics")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [(row[0], row[1]) for row in rows] == [(spec.name, spec.schema) for spec in topics.ALL_TOPICS]


def test_topics_create_makes_the_registry_s_topics_and_refuses_another_partition_count(own_broker, tmp_path):
    """What the compose file's one-shot runs before the workers: idempotent, and it says when the
    topics there would break co-partitioning."""
    env = {"ORDERFLOW_BROKER": own_broker.bootstrap, "ORDERFLOW_PARTITIONS": "3"}
    first = orderflow("topics", "--create", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{len(topics.ALL_TOPICS)} topics created, 0 already there; all with 3 partitions"
    again = orderflow("topics", "--create", cwd=tmp_path, env=env)
    assert again.stdout.strip() == f"0 topics created, {len(topics.ALL_TOPICS)} already there; all with 3 partitions"
    other = orderflow("topics", "--create", cwd=tmp_path, env={**env, "ORDERFLOW_PARTITIONS": "5"})
    assert other.returncode == 1 and "another partition count than the planned 5" in other.stderr
    assert orderflow("topics", "--create", cwd=tmp_path).returncode == 2  # no broker configured
    # Created with the registry's configs: a dead letter carries the rejected message whole.
    assert asyncio.run(topic_configs(own_broker.bootstrap, topics.DEAD_LETTERS.name))["max.message.bytes"] == "2097152"


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


# --- 2. produce ----------------------------------------------------------------------------------------------------

def test_produce_publishes_the_valid_lines_and_reports_each_invalid_one(bootstrap, tmp_path, uid):
    created_1, paid_1, created_2 = unique(uid, [
        created("a", T0), paid("a", T0 + MIN),
        created("b", T0 + 2 * MIN, line_items=[{"sku_id": "sku-9", "product_name": "Ốp lưng điện thoại",
                                                 "quantity": 1, "unit_price": "99000"}],
                total_amount="99000", currency="VND", region="VN")])
    no_method = {k: v for k, v in unique(uid, [paid("a", T0 + MIN)])[0].items() if k != "payment_method"}
    no_method["event_id"] += "-x"
    unknown_type = {**unique(uid, [event("PARCEL_TELEPORTED", "a", T0 + 3 * MIN)])[0]}
    unknown_type["event_id"] += "-y"
    maybe = {**unique(uid, [cancel_response("a", T0 + 4 * MIN, "MAYBE")])[0]}
    maybe["event_id"] += "-z"
    path = write_lines(tmp_path / "mixed.jsonl", [
        created_1,                 # 1
        "this is not JSON",        # 2
        json.dumps([created_1]),   # 3: a JSON array
        no_method,                 # 4: missing an essential field
        "",                        # 5: blank, skipped without a report
        unknown_type,              # 6
        maybe,                     # 7: an unknown enum symbol
        paid_1,                    # 8
        created_2,                 # 9
    ])

    result = orderflow("produce", path, cwd=tmp_path, env={"ORDERFLOW_BROKER": bootstrap})

    assert result.returncode == 1, result.stderr
    output = result.stdout + "\n" + result.stderr
    reports = {int(n): reason for n, reason in REPORT.findall(output)}
    assert sorted(reports) == [2, 3, 4, 6, 7], output
    assert reports[2].strip()  # the JSON parser's own words
    assert "not a JSON object" in reports[3]
    assert "ORDER_PAID lacks payment_method" in reports[4]
    assert "unknown event_type 'PARCEL_TELEPORTED'" in reports[6]
    assert "decision must be one of ACCEPT, REJECT" in reports[7] and "'MAYBE'" in reports[7]
    assert SUMMARY.search(result.stderr).groups() == ("3", "5"), result.stderr

    published = read_order_events(bootstrap, f"cli-{uid}-")
    assert sorted(r["event_id"] for _, r in published) == sorted(
        e["event_id"] for e in (created_1, paid_1, created_2))
    by_id = {r["event_id"]: (key, r) for key, r in published}
    for sent in (created_1, paid_1, created_2):
        key, record = by_id[sent["event_id"]]
        assert key == sent["order_id"].encode()  # keyed by order, so one order's events stay in order
        assert messages.event_from_record(record) == sent  # the JSON form: nulls left out
    # The same order's events on one partition, in file order.
    assert [r["event_id"] for _, r in published if r["order_id"] == created_1["order_id"]] == [
        created_1["event_id"], paid_1["event_id"]]


def test_produce_of_only_valid_lines_from_stdin_exits_0(bootstrap, tmp_path, uid):
    events = unique(uid, [created("c", T0), paid("c", T0 + MIN)])
    text = "".join(json.dumps(e) + "\n" for e in events)

    result = orderflow("produce", "-", cwd=tmp_path, env={"ORDERFLOW_BROKER": bootstrap}, input=text)

    assert result.returncode == 0, result.stderr
    assert SUMMARY.search(result.stderr).groups() == ("2", "0")
    assert not REPORT.search(result.stdout + result.stderr)
    assert [r["event_id"] for _, r in read_order_events(bootstrap, f"cli-{uid}-")] == [e["event_id"] for e in events]


def test_produce_without_a_broker_is_a_usage_error(tmp_path):
    path = write_lines(tmp_path / "one.jsonl", [created("nobroker")])
    result = orderflow("produce", path, cwd=tmp_path)
    assert result.returncode == 2
    assert "no broker" in result.stderr and "ORDERFLOW_BROKER" in result.stderr


# --- 3. tail -------------------------------------------------------------------------------------------------------

def test_tail_prints_the_published_events_as_json_lines(bootstrap, tmp_path, uid):
    events = unique(uid, [created("d", T0), paid("d", T0 + MIN), created("e", T0 + 2 * MIN)])
    path = write_lines(tmp_path / "events.jsonl", events)
    env = {"ORDERFLOW_BROKER": bootstrap}
    assert orderflow("produce", path, cwd=tmp_path, env=env).returncode == 0

    result = orderflow("tail", "order-events", "--idle-timeout", "2", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    shown = json_lines(result.stdout)  # every stdout line is one JSON object
    mine = [record for record in shown if str(record["event_id"]).startswith(f"cli-{uid}-")]
    assert sorted(r["event_id"] for r in mine) == sorted(e["event_id"] for e in events)
    by_id = {r["event_id"]: r for r in mine}
    for sent in events:
        assert messages.event_from_record(by_id[sent["event_id"]]) == sent

    first = orderflow("tail", "order-events", "--max", "1", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert len(json_lines(first.stdout)) == 1


def test_tail_of_an_unknown_topic_is_a_usage_error_listing_the_known_topics(tmp_path):
    result = orderflow("tail", "no-such-topic", cwd=tmp_path, env={"ORDERFLOW_BROKER": "127.0.0.1:1"})
    assert result.returncode == 2
    assert "Usage:" in result.stderr and "unknown topic 'no-such-topic'" in result.stderr
    for spec in topics.ALL_TOPICS:
        assert spec.name in result.stderr
    assert result.stdout == ""


# --- 4. replay -----------------------------------------------------------------------------------------------------

def small_story() -> list[dict]:
    """Order A created, then paid 47 h later; order B created a minute after A and never paid."""
    return [created("A", T0), created("B", T0 + MIN), paid("A", T0 + 47 * HOUR)]


def view(output: dict) -> tuple:
    kind = output["output"]
    if kind == "status_change":
        return kind, output["order_id"], output["at"], output["from_status"], output["to_status"], output["reason"]
    if kind in ("reminder", "alert"):
        return kind, output["order_id"], output["at"], output["kind"]
    return kind, output["order_id"], output["at"], output["reason"]


def tally(stderr: str) -> dict[str, int]:
    match = TALLY.search(stderr)
    assert match, stderr
    return dict(zip(("in", "applied", "dead_lettered", "duplicates", "held", "after_until", "orders"),
                    map(int, match.groups())))


EXPECTED_SMALL = [
    ("status_change", "A", T0, None, "UNPAID", "CREATED"),
    ("status_change", "B", T0 + MIN, None, "UNPAID", "CREATED"),
    ("reminder", "A", T0 + 15 * MIN, "PAYMENT_REMINDER_15M"),
    ("reminder", "B", T0 + MIN + 15 * MIN, "PAYMENT_REMINDER_15M"),
    ("reminder", "A", T0 + 16 * HOUR, "PAYMENT_REMINDER_16H"),
    ("reminder", "B", T0 + MIN + 16 * HOUR, "PAYMENT_REMINDER_16H"),
    ("status_change", "A", T0 + 47 * HOUR, "UNPAID", "AWAITING_SHIPMENT", "PAID"),
    ("status_change", "B", T0 + MIN + 48 * HOUR, "UNPAID", "CANCELLED", "UNPAID_TIMEOUT"),
]


def test_replay_writes_the_outputs_in_the_order_they_take_effect(tmp_path):
    events = write_lines(tmp_path / "events.jsonl", small_story())
    out = tmp_path / "out.jsonl"

    result = orderflow("replay", events, "--until", UNTIL_ISO, "--out", out, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the outputs went to --out
    outputs = json_lines(out.read_text())
    assert [view(o) for o in outputs] == EXPECTED_SMALL
    for output in outputs:  # the JSON form of DOMAIN.md
        assert {"output", "order_id", "at"} <= output.keys()
        if output["output"] == "status_change":
            assert {"from_status", "to_status", "reason"} <= output.keys()
        else:
            assert "kind" in output
        assert isinstance(output["at"], int)
    assert [o["at"] for o in outputs] == sorted(o["at"] for o in outputs)
    counts = tally(result.stderr)
    assert counts == {"in": 3, "applied": 3, "dead_lettered": 0, "duplicates": 0, "held": 0,
                      "after_until": 0, "orders": 2}


def test_replay_until_accepts_utc_ms_and_iso_8601_alike(tmp_path):
    events = write_lines(tmp_path / "events.jsonl", small_story())
    runs = {until: orderflow("replay", events, "--until", until, cwd=tmp_path)
            for until in (UNTIL_ISO, str(UNTIL_MS), "2026-11-20T12:00:00+00:00", "2026-11-20T20:00:00+08:00",
                          "2026-11-20T12:00:00")}
    for until, result in runs.items():
        assert result.returncode == 0, (until, result.stderr)
        assert result.stdout == runs[UNTIL_ISO].stdout, until
    assert [view(o) for o in json_lines(runs[UNTIL_ISO].stdout)] == EXPECTED_SMALL


def test_replay_fires_a_deadline_due_exactly_at_until_and_not_one_ms_before(tmp_path):
    events = write_lines(tmp_path / "events.jsonl", small_story())
    cancel_at = T0 + MIN + 48 * HOUR
    at = orderflow("replay", events, "--until", cancel_at, cwd=tmp_path)
    before = orderflow("replay", events, "--until", cancel_at - 1, cwd=tmp_path)
    assert at.returncode == before.returncode == 0
    assert [view(o) for o in json_lines(at.stdout)] == EXPECTED_SMALL
    assert [view(o) for o in json_lines(before.stdout)] == EXPECTED_SMALL[:-1]


@pytest.mark.parametrize("until", ["yesterday", "2026-13-45T00:00:00Z", "1.7e12", ""])
def test_replay_with_a_bad_until_is_a_usage_error(tmp_path, until):
    events = write_lines(tmp_path / "events.jsonl", small_story())
    result = orderflow("replay", events, "--until", until, cwd=tmp_path)
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    assert f"bad time {until!r}" in result.stderr and "UTC milliseconds or ISO 8601" in result.stderr
    assert result.stdout == ""


def test_replay_without_until_is_a_usage_error(cli, tmp_path):
    events = write_lines(tmp_path / "events.jsonl", small_story())
    result = cli("replay", events)
    assert result.exit_code == 2 and "Missing option '--until'" in result.stderr


def test_replay_dead_letters_bad_lines_with_their_number_and_the_summary_reconciles(tmp_path):
    a_created, b_created, a_paid = small_story()
    orphan = paid("nobody", UNTIL_MS - 10 * MIN)  # its order never arrives: held, within the orphan grace
    late = paid("B", UNTIL_MS + DAY)  # after --until: not applied
    path = write_lines(tmp_path / "events.jsonl", [
        a_created,              # 1
        "",                     # 2: blank
        "{this is not json",    # 3
        b_created,              # 4
        b_created,              # 5: a duplicate
        "[1, 2, 3]",            # 6
        a_paid,                 # 7
        orphan,                 # 8
        late,                   # 9
    ])

    result = orderflow("replay", path, "--until", UNTIL_ISO, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    outputs = json_lines(result.stdout)
    dead = [o for o in outputs if o["output"] == "dead_letter"]
    assert [(o["order_id"], o["at"], o["event"]) for o in dead] == [(None, T0, None), (None, T0 + MIN, None)]
    assert dead[0]["reason"].startswith("line 3: not JSON")
    assert dead[1]["reason"] == "line 6: not a JSON object"
    assert [view(o) for o in outputs if o["output"] != "dead_letter"] == EXPECTED_SMALL

    counts = tally(result.stderr)
    assert counts["in"] == counts["applied"] + counts["dead_lettered"] + counts["duplicates"] + counts["held"]
    assert counts == {"in": 7, "applied": 3, "dead_lettered": 2, "duplicates": 1, "held": 1,
                      "after_until": 1, "orders": counts["orders"]}
    assert counts["dead_lettered"] == len(dead)


def test_replay_region_policy_file_changes_when_the_unpaid_cancel_happens(tmp_path):
    packaged = PACKAGED_POLICY.read_text()
    custom = packaged.replace('unpaid_timeout = "48h"', 'unpaid_timeout = "2h"')
    assert custom != packaged
    policy = tmp_path / "policy.toml"
    policy.write_text(custom)
    events = write_lines(tmp_path / "events.jsonl", small_story())

    result = orderflow("replay", events, "--until", UNTIL_ISO, "--region-policy", policy, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert [view(o) for o in json_lines(result.stdout)] == [
        ("status_change", "A", T0, None, "UNPAID", "CREATED"),
        ("status_change", "B", T0 + MIN, None, "UNPAID", "CREATED"),
        ("reminder", "A", T0 + 15 * MIN, "PAYMENT_REMINDER_15M"),
        ("reminder", "B", T0 + MIN + 15 * MIN, "PAYMENT_REMINDER_15M"),
        ("status_change", "A", T0 + 2 * HOUR, "UNPAID", "CANCELLED", "UNPAID_TIMEOUT"),
        ("status_change", "B", T0 + MIN + 2 * HOUR, "UNPAID", "CANCELLED", "UNPAID_TIMEOUT"),
        ("alert", "A", T0 + 47 * HOUR, "PAYMENT_AFTER_CANCEL"),  # paid after the cancel: a refund is due
    ]
    # The configured policy (ORDERFLOW_REGION_POLICY) is the same as the option.
    configured = orderflow("replay", events, "--until", UNTIL_ISO, cwd=tmp_path,
                           env={"ORDERFLOW_REGION_POLICY": str(policy)})
    assert configured.returncode == 0 and configured.stdout == result.stdout


def test_replay_with_a_bad_region_policy_is_a_usage_error(tmp_path):
    events = write_lines(tmp_path / "events.jsonl", small_story())
    packaged = PACKAGED_POLICY.read_text()
    bad_duration = tmp_path / "bad-duration.toml"
    bad_duration.write_text(packaged.replace('unpaid_timeout = "48h"', 'unpaid_timeout = "two days"'))
    not_toml = tmp_path / "not-toml.toml"
    not_toml.write_text("unpaid_timeout = [\n")
    for policy, message in ((bad_duration, "bad duration 'two days'"), (not_toml, "Invalid value"),
                            (tmp_path / "missing.toml", "does not exist")):
        result = orderflow("replay", events, "--until", UNTIL_ISO, "--region-policy", policy, cwd=tmp_path)
        assert result.returncode == 2, (policy, result.stderr)
        assert "Usage:" in result.stderr and message in result.stderr, result.stderr
        assert result.stdout == ""


# --- 5. sample -----------------------------------------------------------------------------------------------------

def test_sample_writes_contract_events_that_replay_accepts_without_dead_letters(tmp_path):
    result = orderflow("sample", "--start", SAMPLE_START_ISO, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    assert events and all(contract.problem(e) is None for e in events)
    assert events[0]["event_time"] == SAMPLE_START_MS
    assert [e["event_time"] for e in events] == sorted(e["event_time"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    assert orderflow("sample", "--start", SAMPLE_START_MS, cwd=tmp_path).stdout == result.stdout

    replayed = orderflow("replay", "-", "--until", SAMPLE_START_MS + 10 * DAY, cwd=tmp_path, input=result.stdout)

    assert replayed.returncode == 0, replayed.stderr
    outputs = json_lines(replayed.stdout)
    assert [o for o in outputs if o["output"] == "dead_letter"] == []
    counts = tally(replayed.stderr)
    assert counts["in"] == counts["applied"] == len(events)
    assert counts["dead_lettered"] == counts["duplicates"] == counts["held"] == counts["after_until"] == 0
    # The sample walks the main paths of the lifecycle.
    reasons = {o["reason"] for o in outputs if o["output"] == "status_change"}
    assert {"CREATED", "PAID", "SHIPPED", "COLLECTED", "DELIVERED", "BUYER_CONFIRMED", "UNPAID_TIMEOUT",
            "SELLER_CANCELLED", "CANCEL_REQUEST_TIMEOUT", "LOGISTICS_FAILURE"} <= reasons
    kinds = {o["kind"] for o in outputs if o["output"] in ("reminder", "alert")}
    assert {"PAYMENT_REMINDER_15M", "PAYMENT_REMINDER_16H", "SHIP_BY_OVERDUE", "PAYMENT_AFTER_CANCEL",
            "REDELIVERY_WINDOW_EXPIRED"} <= kinds


def test_sample_with_a_bad_start_is_a_usage_error(tmp_path):
    result = orderflow("sample", "--start", "yesterday", cwd=tmp_path)
    assert result.returncode == 2
    assert "bad time 'yesterday'" in result.stderr and "Traceback" not in result.stderr


# --- 5b. simulate: split shipments ---------------------------------------------------------------------------

PARCEL_EVENTS = ("PACKAGE_SHIPPED", "LOGISTICS_UPDATE", "DELIVERY_FAILED", "REDELIVERY_REQUESTED", "DELIVERED")


def simulated(orders: int, seed: int, **mix) -> tuple[list[dict], list[dict], dict]:
    """Simulated traffic, the outputs of its replay through the core (until every deadline has passed)
    and the orders it leaves."""
    events = list(Simulator(seed=seed, start=T0, orders_per_hour=300, mix=Mix(**mix)).events(orders))
    outputs, book = replayed(events, events[-1]["event_time"] + 60 * DAY, Policy.load())
    return events, outputs, book.orders


def by_order(events: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for e in events:
        grouped.setdefault(e["order_id"], []).append(e)
    return grouped


def split_orders(events: list[dict]) -> dict[str, list[dict]]:
    return {order: story for order, story in by_order(events).items()
            if any(e.get("package_id") for e in story)}


def test_simulate_ships_some_orders_of_several_lines_in_packages_that_the_core_follows():
    events, outputs, orders = simulated(3000, seed=4)
    split = split_orders(events)
    assert 40 < len(split) < 200  # about 8% of the orders with several lines that ship
    sizes = Counter()
    for order_id, story in split.items():
        # Every parcel event names its package; each package ships its own lines, P1 first, then P2, ...
        assert all(e.get("package_id") for e in story if e["event_type"] in PARCEL_EVENTS), order_id
        handed = [e for e in story if e["event_type"] == "PACKAGE_SHIPPED"]
        assert [e["package_id"] for e in handed] == [f"P{n}" for n in range(1, len(handed) + 1)]
        assert [e["event_time"] for e in handed] == sorted({e["event_time"] for e in handed})
        shipped = [line for e in handed for line in e["line_ids"]]
        cancelled = {line for e in story if e["event_type"] == "SELLER_CANCELLED" for line in e.get("line_ids", ())}
        lines = {str(n) for n in range(1, len(story[0]["line_items"]) + 1)}
        assert sorted(shipped) == sorted(lines - cancelled)  # each open line once, no cancelled one
        assert len({e["event_id"] for e in story}) == len(story)
        sizes[len(handed)] += 1
        assert len(orders[order_id]["packages"]) == len(handed)
    assert set(sizes) == {2, 3}
    assert [o for o in outputs if o["output"] == "dead_letter"] == []
    partly = {o["order_id"] for o in outputs if o["output"] == "status_change"
              and (o["from_status"], o["to_status"]) == ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING")}
    assert partly == set(split)
    assert {o["order_id"] for o in outputs if o["output"] == "status_change"
            and o["from_status"] == "PARTIALLY_SHIPPING"} == set(split)
    # The ship-by time passed before every package was handed over: the lines still to ship are named.
    partly_late = 0
    for alert in (o for o in outputs if o.get("kind") == "SHIP_BY_OVERDUE" and o["order_id"] in split):
        handed = [e for e in split[alert["order_id"]] if e["event_type"] == "PACKAGE_SHIPPED"]
        assert set(alert["detail"]["line_ids"].split(",")) == {
            line for e in handed if e["event_time"] > alert["at"] for line in e["line_ids"]}
        partly_late += handed[0]["event_time"] <= alert["at"]
    assert partly_late
    assert len({e["event_id"] for e in events}) == len(events)


def test_orders_that_do_not_split_are_the_traffic_of_before():
    events = list(Simulator(seed=4, start=T0, mix=Mix()).events(1500))
    unsplit = list(Simulator(seed=4, start=T0, mix=Mix(split_shipment=0)).events(1500))
    split = split_orders(events)
    assert split
    assert [e for e in events if e.get("order_id") not in split] == \
        [e for e in unsplit if e.get("order_id") not in split]
    before = by_order(unsplit)
    for order_id, story in split.items():
        # The first package is the parcel the order would have been, P1, with its lines.
        first = [{k: v for k, v in e.items() if k not in ("package_id", "line_ids")} for e in story
                 if e.get("package_id") == "P1"]
        assert first == [e for e in before[order_id] if e["event_type"] in PARCEL_EVENTS]


def test_simulate_plays_a_package_given_up_while_the_others_are_delivered():
    events, outputs, orders = simulated(1500, seed=2, split_shipment=0.5, delivery_failed=0.3,
                                        redelivery_requested=0.3, line_cancel=0.3)
    split = split_orders(events)
    assert [o for o in outputs if o["output"] == "dead_letter"] == []
    given_up = [o for o in outputs if o.get("kind") == "REDELIVERY_WINDOW_EXPIRED" and o["order_id"] in split]
    assert given_up and all(o["detail"]["package_id"].startswith("P") and o["detail"]["line_ids"]
                            and o["detail"]["amount"] and o["detail"]["currency"] for o in given_up)
    kept = [o for o in given_up if orders[o["order_id"]]["status"] != "CANCELLED"]
    assert kept  # the order goes on with its other packages; the given-up lines are cancelled
    for alert in kept:
        order = orders[alert["order_id"]]
        lines = alert["detail"]["line_ids"].split(",")
        assert all(order["cancelled_lines"][line]["reason"] == "LOGISTICS_FAILURE" for line in lines)
        assert any(p["status"] == "DELIVERED" for p in order["packages"])
    assert any(e["event_type"] == "SELLER_CANCELLED" and e.get("line_ids") for story in split.values()
               for e in story)  # split orders whose lines were cancelled first ship only the others


# --- 6. live vs replay ---------------------------------------------------------------------------------------------

LIVE_AGE = 103 * HOUR  # the sample's outputs stop at +72h05m and resume at +208h: no deadline near "now"


def test_a_live_worker_fed_by_produce_publishes_what_replay_of_the_same_file_writes(own_broker, tmp_path, uid):
    bootstrap = own_broker.bootstrap  # a worker of its own: no other test's offsets, tables or outputs
    start = wall_ms() - LIVE_AGE
    sample = orderflow("sample", "--start", start, cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    events = [{**e, "event_id": f"cli-{uid}-{e['event_id']}", "order_id": f"cli-{uid}-{e['order_id']}"}
              for e in json_lines(sample.stdout)]
    path = write_lines(tmp_path / "sample.jsonl", events)
    replayed = orderflow("replay", path, "--until", start + LIVE_AGE, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    expected = [view(o) for o in json_lines(replayed.stdout)]
    assert len(expected) > 20

    worker = WorkerProcess(bootstrap, tmp_path / "worker")  # `orderflow run`: it creates the topics
    try:
        worker.wait_ready()
        produced = orderflow("produce", path, cwd=tmp_path, env={"ORDERFLOW_BROKER": bootstrap})
        assert produced.returncode == 0, produced.stderr

        def mine(seen):
            return [(KIND_OF_TOPIC[topic], record) for topic, record in seen
                    if str(record.get("order_id")).startswith(f"cli-{uid}-")]
        run(read_outputs(bootstrap, lambda seen: len(mine(seen)) >= len(expected), timeout=60))
        live = mine(run(read_outputs(bootstrap, lambda seen: False, timeout=1.5)))  # and nothing more comes
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    live_views = [view({"output": kind, **record}) for kind, record in live]
    assert Counter(live_views) == Counter(expected)
    for order_id in {v[1] for v in expected}:  # one order's status changes keep their order
        assert [v for v in live_views if v[1] == order_id and v[0] == "status_change"] == [
            v for v in expected if v[1] == order_id and v[0] == "status_change"]
