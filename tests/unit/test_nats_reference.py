"""The README's "NATS subjects" section is what `python -m events.reference` generates from the
event types, and every event type of every aggregate has its row: it cannot drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from events import reference
from events.codec import aggregates

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_section_is_the_generated_one() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "events.reference"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert printed == reference.markdown()
    assert reference.readme_section(README.read_text()) == printed, (
        "README's NATS subjects section is out of date: run `python -m events.reference --write README.md`"
    )


def test_every_event_type_has_its_subject_fields_and_publisher() -> None:
    assert set(reference.AGGREGATES) == set(aggregates())
    rows = {}
    for subject, shown, fields, _ in reference.event_rows():
        parts = subject.split(".")
        rows[(parts[2], parts[4])] = (subject, shown, fields)
    expected = set()
    for aggregate, (union, _, id_field) in reference.AGGREGATES.items():
        for cls in reference.event_types(union):
            tag = str(cls.__struct_config__.tag)
            expected.add((aggregate, tag))
            subject, shown, fields = rows[(aggregate, tag)]
            assert subject.startswith(f"ev.<domain>.{aggregate}.") and shown.startswith(f"`{tag}`")
            version = next(f.default for f in msgspec.structs.fields(cls) if f.name == "v")
            assert (f"(v{version})" in shown) == (version > 1), (aggregate, tag, shown)
            for f in msgspec.structs.fields(cls):
                if f.name not in reference.ENVELOPE and f.name != id_field:
                    assert f"`{f.name}" in fields, (aggregate, tag, f.name)
    assert set(rows) == expected
    assert set(reference.PUBLISHERS) == expected, "PUBLISHERS names a type that no longer exists"


def test_a_type_without_a_publisher_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    publishers = dict(reference.PUBLISHERS)
    del publishers[("job", "held")]
    monkeypatch.setattr(reference, "PUBLISHERS", publishers)
    with pytest.raises(KeyError, match=r"no entry for: job\.held"):
        reference.markdown()


def test_a_stale_readme_is_refused() -> None:
    section = reference.markdown()
    stale = section.replace("| `held` |", "| `held_up` |")
    assert reference.readme_section("intro\n" + stale + "outro\n") != section
    with pytest.raises(ValueError, match="markers are missing"):
        reference.readme_section("no section here")
