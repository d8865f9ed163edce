"""sip.conf.example documents every setting with its real default."""

from __future__ import annotations

import configparser
import dataclasses
from pathlib import Path

from ivr.config import SECTIONS, Settings, load_settings

EXAMPLE = Path(__file__).parent.parent / "sip.conf.example"


def test_the_example_documents_every_key() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(EXAMPLE)
    for section, kind in SECTIONS.items():
        assert parser.has_section(section), f"[{section}] is not documented"
        documented = set(parser[section])
        keys = {f.name for f in dataclasses.fields(kind)}
        assert keys == documented, f"[{section}]: code {sorted(keys)} vs doc {sorted(documented)}"


def test_loading_the_example_gives_the_defaults() -> None:
    loaded = load_settings(EXAMPLE, environ={})
    assert dataclasses.replace(loaded, source="<defaults>") == Settings()
