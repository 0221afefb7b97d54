"""The README stays short and its set-up commands stay the ones CI runs; the manual lives in docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_runs_the_commands_ci_runs():
    assert len(README.splitlines()) <= 150
    ci = (ROOT / ".ci" / "run").read_text()
    (tests_line,) = [ln for ln in ci.splitlines() if ln.startswith("python3 -m venv .venv")]
    assert tests_line in README
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/autotune start --model resnet" in README
    assert "## Headline figures" in README


def test_every_link_in_the_readme_and_the_manual_stays_inside_the_repository():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{page.name}: {target}"


def test_every_manual_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages and all(f": {p}\n" in nav for p in pages), sorted(p for p in pages if f": {p}\n" not in nav)
