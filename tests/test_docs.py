"""The documentation stays true: the MkDocs site builds in strict mode (a broken link or anchor
between pages fails it), README's links point at files and headings that exist, and every
repository path the pages name exists."""

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
DOCS = PROJECT / "docs"

# README opens with these two commands, unchanged (.ci/run runs the second one).
OPENING = [
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" && .venv/bin/copyjob demo',
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" && .venv/bin/pytest',
]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (links there are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(markdown: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", _prose(markdown.read_text()), flags=re.M)
    return {_github_slug(h) for h in headings}


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """`mkdocs build --strict`: links and anchors between pages, the nav, no page left out."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in sorted(DOCS.glob("*.md")):
        html = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert html.is_file(), f"{page.name} was not built into {html}"
    assert "Incremental copies" in (site / "incremental" / "index.html").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert first_block is not None
    commands = [line.split("   #")[0].rstrip() for line in first_block.group(1).splitlines()]
    assert commands == OPENING


def test_readme_links_point_at_files_and_headings_that_exist() -> None:
    problems = []
    links = LINK.findall(_prose(README.read_text()))
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (PROJECT / path) if path else README
        if not target.exists():
            problems.append(f"{link}: no file {path}")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            problems.append(f"{link}: no heading #{anchor} in {path or 'README.md'}")
    assert not problems, "README.md: " + "; ".join(problems)


def test_repository_paths_named_in_the_docs_exist() -> None:
    """Pages name repository files as `deploy/dagster.k8s.yaml` (MkDocs cannot link outside
    docs/): each such path, under one of the repository's top folders, must exist."""
    tops = {p.name for p in PROJECT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    tops.discard("site")
    named, missing = 0, []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for span in CODE_SPAN.findall(page.read_text()):
            if not re.fullmatch(r"[\w.-]+(/[\w.-]+)+/?", span) or span.split("/")[0] not in tops:
                continue
            named += 1
            if not (PROJECT / span).exists() and not _ignored(span):
                missing.append(f"{page.name}: {span}")
    assert named > 10
    assert not missing, "paths named in the docs that do not exist: " + ", ".join(missing)


def _ignored(path: str) -> bool:
    """Folders that runs make and git ignores (`benchmarks/.peers`) need not exist yet."""
    folder = path.rstrip("/") + "/"  # a pattern `dir/` matches a path that is absent only so
    done = subprocess.run(
        ["git", "check-ignore", path, folder], cwd=PROJECT, capture_output=True, timeout=30
    )
    return done.returncode == 0
