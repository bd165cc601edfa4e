"""The documentation ships with the project: every relative link in README.md and docs/ points
to a file inside this repository (a clone has nothing beside it), and the README stays a quick
start that points to docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)|`(\.\./[^`]+)`")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    found = [a or b for a, b in LINK.findall(page.read_text())]
    return [link for link in found if "://" not in link and not link.startswith("mailto:")]


def test_every_relative_link_stays_in_the_repository() -> None:
    problems = []
    for page in PAGES:
        for link in relative_links(page):
            target = (page.parent / link).resolve()
            if not target.is_relative_to(ROOT) or not target.exists():
                problems.append(f"{page.relative_to(ROOT)}: {link}")
    assert problems == []


def test_readme_is_a_quick_start_pointing_to_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    linked = {link for link in relative_links(ROOT / "README.md") if link.startswith("docs/")}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked  # every page is reachable
    # a quick start, the security summary and the measured numbers the issues ask for; no more
    assert len(readme.splitlines()) < 175
