"""Every link into the documentation resolves, and the README stays short.

Checked: the relative links and anchors of README.md and docs/*.md, the docs/ paths named
in the comments of docker-compose.yml, and every alert's runbook_url (and every dashboard
link) that points into this repository through its GitHub address. A link resolves when
its file exists in the repository and, if it carries an anchor, a heading of that markdown
file produces the anchor under GitHub's rule: lower case; punctuation removed except
hyphens and underscores; each space becomes a hyphen; the second heading with the same
slug gets -1, the third -2. Only ATX headings (``## Title``) outside fenced code count.

These tests need nothing but the files: no package import, no network.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKDOWN = [README, *sorted((REPO / "docs").glob("*.md"))]
COMPOSE = REPO / "docker-compose.yml"
ALERT_RULES = sorted((REPO / "prometheus" / "rules").glob("alerts-*.yml"))
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
#: How links from outside the repository (alerts, dashboards) address its files.
REPO_URLS = (
    "https://github.com/salespulse/salespulse/blob/main/",
    "https://github.com/salespulse/salespulse/tree/main/",
)
README_MAX_LINES = 350

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
#: Inline code and link texts may wrap onto the next line, but never across a blank line.
SAME_PARAGRAPH = r"(?:[^\n]|\n(?![ \t]*\n))"
CODE_SPAN = re.compile(rf"(`+)(?:(?!\1){SAME_PARAGRAPH})+?\1")
INLINE_LINK = re.compile(
    rf"!?\[(?:(?![\[\]]){SAME_PARAGRAPH}|\[[^\]\n]*\])*\]"  # [text], one level of [nested]
    r"\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)"  # (target "optional title")
)
REFERENCE_DEFINITION = re.compile(r"^[ ]{0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?", re.MULTILINE)
LINK_TEXT = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)")
HTML_TAG = re.compile(r"<[^>]+>")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")
#: A docs/ path in free text, with an optional anchor; it ends on a word character.
DOCS_PATH = re.compile(r"(?<![\w./-])(docs/[\w./-]*[\w-](?:#[\w-]+)?)")


# ------------------------------------------------------------------------ helpers


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is None:
            yield number, line
        elif re.fullmatch(rf"\s{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
            fence = None  # the closing fence: same character, at least as long, nothing after


def slug(heading: str) -> str:
    """GitHub's anchor for the text of a heading, before duplicates are numbered."""
    text = LINK_TEXT.sub(r"\1", heading)
    text = HTML_TAG.sub("", text).strip().lower()
    kept = "".join(
        ch
        for ch in text
        if ch in "-_ " or unicodedata.category(ch)[0] in "LNM"  # letters, numbers, marks
    )
    return kept.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor the headings of a markdown text produce, duplicates numbered."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(markdown):
        match = ATX_HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose(markdown: str) -> str:
    """The text with fenced code and inline code blanked out; line numbers stay the same."""
    kept = dict(prose_lines(markdown))
    text = "\n".join(kept.get(number, "") for number in range(1, len(markdown.splitlines()) + 1))
    return CODE_SPAN.sub(lambda span: re.sub(r"[^\n]", " ", span.group(0)), text)


def markdown_links(markdown: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition."""
    text = prose(markdown)
    matches = [*INLINE_LINK.finditer(text), *REFERENCE_DEFINITION.finditer(text)]
    for match in sorted(matches, key=lambda found: found.start(1)):
        yield text.count("\n", 0, match.start(1)) + 1, match.group(1)


def compose_doc_paths(text: str) -> Iterator[tuple[int, str]]:
    """(line number, docs/ path) named in a YAML comment (a # at line start or after a space)."""
    for number, line in enumerate(text.splitlines(), start=1):
        comment = re.search(r"(?:^|\s)#(.*)$", line)
        if comment:
            for match in DOCS_PATH.finditer(comment.group(1)):
                yield number, match.group(1)


def in_repository(url: str) -> str | None:
    """The repository path a GitHub address of this repository names, else None."""
    for prefix in REPO_URLS:
        if url.startswith(prefix):
            return url.removeprefix(prefix)
    return None


def problem(target: str, base: Path, source: Path, root: Path = REPO) -> str | None:
    """Why ``target`` (a path relative to ``base``, optional #anchor) does not resolve, or None.

    ``source`` is the file the link is in: an anchor without a path points into it. Paths
    must stay inside ``root`` and are reported relative to it.
    """
    path_part, _, anchor = unquote(target).partition("#")
    if path_part:
        file = (base / path_part).resolve()
        if not file.is_relative_to(root):
            return "points outside the repository"
        if not file.exists():
            return f"{file.relative_to(root)} does not exist"
    else:
        file = source.resolve()
    if not anchor:
        return None
    if file.suffix != ".md":
        return f"anchor #{anchor} on {file.relative_to(root)}, which is not markdown"
    if anchor not in anchors(file.read_text(encoding="utf-8")):
        return f"no heading in {file.relative_to(root)} makes the anchor #{anchor}"
    return None


def broken_markdown_links(path: Path, root: Path = REPO) -> list[str]:
    """One line per link of a markdown file that does not resolve."""
    broken = []
    for number, target in markdown_links(path.read_text(encoding="utf-8")):
        repository_path = in_repository(target)
        if repository_path is not None:
            why = problem(repository_path, root, path, root)
        elif SCHEME.match(target):
            continue  # another site; not checked here
        else:
            why = problem(target, path.parent, path, root)
        if why:
            broken.append(f"{path.name}:{number}: ({target}) {why}")
    return broken


def strings(node: Any) -> Iterator[str]:
    """Every string value in parsed JSON or YAML."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in ALERT_RULES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            rules += [rule for rule in group["rules"] if "alert" in rule]
    return rules


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


# -------------------------------------------------------------- the GitHub anchor rule


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Running at scale with Docker Compose", "running-at-scale-with-docker-compose"),
        ("The KPI digest (`salespulse report`)", "the-kpi-digest-salespulse-report"),
        ("Using an existing Kafka cluster (SASL/TLS)", "using-an-existing-kafka-cluster-sasltls"),
        ("Examples, one per type", "examples-one-per-type"),
        ("SalesPulseDetractorSpike", "salespulsedetractorspike"),
        ("SalesPulse - Pipeline health", "salespulse---pipeline-health"),
        ("snake_case stays", "snake_case-stays"),
        ("See [the docs](docs/x.md) here", "see-the-docs-here"),
        ("گزارش فروش", "گزارش-فروش"),
    ],
)
def test_a_heading_anchor_is_lower_case_without_punctuation_and_spaces_become_hyphens(
    heading: str, anchor: str
) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors_from_the_second_on() -> None:
    text = "# Notes\n\n## Setup\n\ntext\n\n## Setup\n\n### Setup\n"
    assert anchors(text) == {"notes", "setup", "setup-1", "setup-2"}


def test_headings_inside_fenced_code_make_no_anchor() -> None:
    text = "## Real\n\n```sh\n# not a heading\n```\n\n~~~\n## nor this\n~~~\n"
    assert anchors(text) == {"real"}


def test_a_link_whose_text_wraps_onto_the_next_line_is_found_on_the_line_of_its_target() -> None:
    text = "# T\n\nSee [the delivery\nguarantee](ops.md#delivery-guarantee) and [a](b.md).\n"
    assert list(markdown_links(text)) == [(4, "ops.md#delivery-guarantee"), (4, "b.md")]


def test_reference_definitions_are_links() -> None:
    text = "See [the guide][g].\n\n[g]: guide.md#start\n"
    assert list(markdown_links(text)) == [(3, "guide.md#start")]


def test_links_inside_code_are_not_links() -> None:
    text = "Run `[x](nowhere.md)` and `kpis\n[w](nor.md)`.\n\n```md\n[y](nowhere.md)\n```\n\n[z](here.md)\n"
    assert [target for _, target in markdown_links(text)] == ["here.md"]


def test_a_missing_file_a_missing_anchor_and_an_escape_from_the_repository_are_reported(
    tmp_path: Path,
) -> None:
    """The checker fails on broken links: it is not vacuously green."""
    root = tmp_path.resolve()
    (root / "docs").mkdir()
    page = root / "docs" / "page.md"
    page.write_text(
        "# Page\n\n[ok](#page) [gone](missing.md) [bad anchor](#nowhere)\n"
        "[ok too](other.md#two) [bad anchor elsewhere](other.md#three) [out](../../x.md)\n"
        "[by address](https://github.com/salespulse/salespulse/blob/main/docs/other.md#four)\n"
        "[another site](https://example.com/#whatever)\n",
        encoding="utf-8",
    )
    (root / "docs" / "other.md").write_text("# One\n\n## Two\n", encoding="utf-8")
    assert broken_markdown_links(page, root=root) == [
        "page.md:3: (missing.md) docs/missing.md does not exist",
        "page.md:3: (#nowhere) no heading in docs/page.md makes the anchor #nowhere",
        "page.md:4: (other.md#three) no heading in docs/other.md makes the anchor #three",
        "page.md:4: (../../x.md) points outside the repository",
        "page.md:5: (https://github.com/salespulse/salespulse/blob/main/docs/other.md#four) "
        "no heading in docs/other.md makes the anchor #four",
    ]


# ------------------------------------------------------------------- the repository


def test_the_readme_is_at_most_350_lines() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material to docs/"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    pages = {relative(path) for path in MARKDOWN if path != README}
    assert pages, "no docs/*.md found"
    linked = {target.partition("#")[0] for _, target in markdown_links(README.read_text(encoding="utf-8"))}
    assert not pages - linked, f"README.md does not link to {sorted(pages - linked)}"


@pytest.mark.parametrize("path", MARKDOWN, ids=relative)
def test_every_relative_link_and_anchor_in_the_markdown_resolves(path: Path) -> None:
    broken = broken_markdown_links(path)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_path_in_the_docker_compose_comments_resolves() -> None:
    named = list(compose_doc_paths(COMPOSE.read_text(encoding="utf-8")))
    assert named, "docker-compose.yml names no docs/ path any more; drop or adjust this test"
    broken = [
        f"docker-compose.yml:{number}: {target}: {why}"
        for number, target in named
        if (why := problem(target, REPO, COMPOSE))
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_alert_runbook_url_points_at_a_heading_in_this_repository() -> None:
    rules = alert_rules()
    assert rules, "no alert rules found"
    broken = []
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        repository_path = in_repository(url)
        if repository_path is None:
            broken.append(f"{rule['alert']}: {url} is not an address in this repository")
        elif "#" not in repository_path:
            broken.append(f"{rule['alert']}: {url} names no runbook section")
        elif why := problem(repository_path, REPO, ALERT_RULES[0]):
            broken.append(f"{rule['alert']}: {url}: {why}")
    assert not broken, "broken runbook links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", DASHBOARDS, ids=relative)
def test_every_dashboard_link_into_this_repository_resolves(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    broken = [
        f"{url}: {why}"
        for url in strings(board)
        if (repository_path := in_repository(url)) is not None
        and (why := problem(repository_path, REPO, path))
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)
