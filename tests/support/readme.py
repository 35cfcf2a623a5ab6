"""The README's event contract examples, as the tests that check them and the clients that read them use."""
from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_examples() -> list[dict]:
    section = README.read_text(encoding="utf-8").split("## The event contract", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```jsonl\n(.*?)```", section, re.S).group(1)
    return [json.loads(line) for line in block.splitlines()]
