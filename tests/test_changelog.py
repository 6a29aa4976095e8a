"""The CHANGELOG tells operators what each release does to a running stack."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNING_STACK = "### What happens to my running stack"
FIRST_RELEASE_WITH_THE_SECTION_AFTER = "0.2.0"
"""Releases up to this one predate the rule; every later one, and Unreleased, has the section."""


def release_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_every_release_after_0_2_0_says_what_happens_to_a_running_stack() -> None:
    sections = release_sections((ROOT / "CHANGELOG.md").read_text())
    titles = list(sections)
    assert FIRST_RELEASE_WITH_THE_SECTION_AFTER in titles
    newer = titles[: titles.index(FIRST_RELEASE_WITH_THE_SECTION_AFTER)]
    assert newer, "no release section above 0.2.0: add `## Unreleased`"
    missing = [title for title in newer if RUNNING_STACK not in sections[title].splitlines()]
    assert missing == [], f"add '{RUNNING_STACK}' to: {', '.join(missing)}"
