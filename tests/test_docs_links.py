"""The README is the front door and docs/ the manual: every relative link between them leads to a
file that exists and, when it names one, to a heading of that file; every page is in the README's
index; and the pages product code points users at exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```.*?^\s*```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
PAGE_IN_CODE = re.compile(r"\bdocs/[\w-]+\.md\b")


def prose(markdown: str) -> str:
    """The text outside fenced blocks: a `# comment` in a bash block is not a heading."""
    return FENCE.sub("", markdown)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped (backticks, colons, dots,
    apostrophes), spaces turned into hyphens; `_` and `-` kept."""
    text = heading.replace("`", "").strip().lower()
    kept = "".join(ch for ch in text if ch.isalnum() or ch in " _-")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", prose(page.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` that leads nowhere, with why."""
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading has the anchor '#{anchor}'")
    return broken


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    assert broken_links(page) == []


def test_every_docs_page_is_in_the_readme_index() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in relative_links(README)}
    missing = [p.name for p in PAGES if p.resolve() not in linked]
    assert missing == [], f"add {missing} to the README's index (its 'Documentation' table)"


def product_files() -> list[Path]:
    """The files that print, log or comment for users: the packages, the policy pack, scripts."""
    return [
        path
        for home in ("convai_provider", "convai_stack", "policy", "scripts")
        for path in sorted((ROOT / home).rglob("*"))
        if path.is_file() and path.suffix in {".py", ""}
    ]


def test_the_pages_product_code_names_exist() -> None:
    """Error messages and hints send users to docs/ pages: each must be there."""
    missing = [
        f"{path.relative_to(ROOT)}: {page}"
        for path in product_files()
        for page in PAGE_IN_CODE.findall(path.read_text(errors="replace"))
        if not (ROOT / page).exists()
    ]
    assert missing == []


def test_product_code_sends_no_one_to_the_readme_for_the_manual() -> None:
    """Messages and comments that once named a README section ('see README, "Adding an
    environment"') name the docs page that holds it now: the README keeps no manual sections.
    What 0.1.0's README said is history, and may be named."""
    pointers = []
    for path in product_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "README" in line and "0.1.0" not in line:
                pointers.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert pointers == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading: here\n")
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading-here) [in page](#page) [web](https://x.example)\n"
        "[gone](missing.md) [no heading](other.md#nowhere)\n"
        "```bash\n# not a heading\n[not a link](nothing.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading has the anchor '#nowhere'",
    ]


def test_slugs_follow_github() -> None:
    assert slug("`audit --stack NAME`") == "audit---stack-name"
    assert slug("The CLI: `scripts/install-pulumi`") == "the-cli-scriptsinstall-pulumi"
    assert slug("Changing `cache_size` or `class`") == "changing-cache_size-or-class"
    assert slug("Rotating an account's key") == "rotating-an-accounts-key"
    assert slug("5. Verify") == "5-verify"
