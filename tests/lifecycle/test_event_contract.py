"""The README's event contract: its example lines are what orderflow accepts, one per event type, and an
address given as one line of text is refused with the fields expected."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from orderflow.streams.cli.commands import main
from orderflow.streams.kafka.publish import Publisher
from orderflow.streams.lifecycle import contract
from support.readme import readme_examples

EXPECTED = ("must be an object with recipient_name, phone, line1, city, country (line2, postcode optional), "
            "not a one-line string")


def test_the_readme_shows_every_event_type_once_and_each_example_passes_the_contract_and_the_schema():
    examples = readme_examples()
    assert sorted(e["event_type"] for e in examples) == sorted([*contract.ESSENTIAL, *contract.INVENTORY])
    for event in examples:
        topic, key, value = Publisher.message(event)  # the contract, then the Avro encoding, as `produce` does
        assert value[:2] == b"\xc3\x01" and key
        assert topic == ("inventory-events" if "sku_id" in event else "order-events")


@pytest.mark.parametrize("event_type, field", [("ORDER_CREATED", "shipping_address"),
                                               ("REDELIVERY_REQUESTED", "new_address")])
def test_a_one_line_address_is_refused_with_the_fields_expected(event_type, field):
    event = {**next(e for e in readme_examples() if e["event_type"] == event_type),
             field: "Ann Lee, 1 High Street, Leeds LS1 1AA, GB"}
    with pytest.raises(ValueError, match=re.escape(f"{field} {EXPECTED}")):
        Publisher.message(event)


def test_a_replay_dead_letters_an_order_whose_address_is_one_line_and_says_which_fields_it_needs(tmp_path):
    examples = {e["event_type"]: e for e in readme_examples()}
    one_line = {**examples["ORDER_CREATED"], "shipping_address": "Ann Lee, 1 High Street, Leeds LS1 1AA, GB"}
    good = {**examples["ORDER_CREATED"], "event_id": "evt-2", "order_id": "ord-1002"}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(one_line) + "\n" + json.dumps(good) + "\n")
    result = CliRunner().invoke(main, ["replay", str(events), "--until", "1795132900000"])
    assert result.exit_code == 0, result.output
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    dead = [o for o in outputs if o["output"] == "dead_letter"]
    assert [(o["order_id"], o["reason"]) for o in dead] == [("ord-1001", f"shipping_address {EXPECTED}")]
    assert ("ord-1002", "UNPAID") in [(o["order_id"], o.get("to_status")) for o in outputs]
