"""The shipped example configuration is valid and documents every key."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from licensed.config import Config, Database, parse

EXAMPLE = Path(__file__).parent.parent / "config" / "licensed.toml"


def test_the_example_configuration_loads_with_default_values() -> None:
    """If the example is loaded as shipped, it gives exactly the defaults."""
    text = EXAMPLE.read_text()

    config = parse(text, EXAMPLE)

    assert config == Config(source=EXAMPLE)


def test_the_example_configuration_mentions_every_key() -> None:
    """If a key exists in the configuration, the example documents it."""
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z_]+) = ", text, flags=re.MULTILINE))

    keys = {f.name for f in fields(Config)} - {"source", "components", "database"}
    keys |= {f.name for f in fields(Database)}

    assert keys <= documented, sorted(keys - documented)
