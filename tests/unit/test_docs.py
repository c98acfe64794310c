"""The documents keep up with the code: every module is in the architecture, every link lands.

README.md is short and points into docs/; a module added without a line in docs/architecture.md,
a doc naming a module that moved, or a link to a file or heading that is gone would each leave a
reader lost, so each is a failing test rather than a review comment.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "syncagent"
DOCS = REPO / "docs"
ARCHITECTURE = DOCS / "architecture.md"

# the pages a reader follows from the README, and the READMEs beside the code they point into
LINKED = [
    REPO / "README.md",
    *sorted(DOCS.glob("*.md")),
    REPO / "bench" / "README.md",
    REPO / "docker" / "README.md",
    REPO / "systemd" / "README.md",
]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def module_files() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py"))


def test_the_docs_exist_where_the_readme_says() -> None:
    for name in (
        "operating",
        "configuration",
        "deployment",
        "metrics",
        "reliability",
        "publish",
        "architecture",
        "benchmarks",
        "testing",
    ):
        assert (DOCS / f"{name}.md").is_file(), name


def test_the_readme_stays_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) < 250


def test_architecture_names_every_module() -> None:
    text = ARCHITECTURE.read_text()
    missing = [path for path in module_files() if f"`{path}`" not in text]
    assert missing == [], "add a line for each to docs/architecture.md"


def test_architecture_names_no_module_that_is_not_there() -> None:
    named = set(re.findall(r"syncagent/[\w/]+\.py", ARCHITECTURE.read_text()))
    assert named, "docs/architecture.md names no module"
    assert sorted(named - set(module_files())) == []


def test_every_syncagent_path_the_docs_name_exists() -> None:
    stale = [
        f"{doc.relative_to(REPO)}: {path}"
        for doc in LINKED
        for path in re.findall(r"\bsyncagent/[\w/]+\.py\b", doc.read_text())
        if not (REPO / path).exists()
    ]
    assert stale == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text())
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links(doc: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", doc.read_text()))


def test_every_relative_link_points_at_an_existing_file_and_heading() -> None:
    broken = []
    for doc in LINKED:
        for link in links(doc):
            if re.match(r"^[a-z]+:", link):  # http:, https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(REPO)}: {link}"
            if not target.exists():
                broken.append(where)
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                broken.append(f"{where} (no such heading)")
    assert broken == []


def test_the_readme_links_every_doc() -> None:
    linked = {(REPO / link.partition("#")[0]).resolve() for link in links(REPO / "README.md")}
    assert sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in linked) == []


def test_metrics_doc_lists_every_shipped_alert() -> None:
    rules = (REPO / "docker" / "prometheus" / "syncagent-alerts.yml").read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", rules, re.M)
    assert alerts, "no alerts found"
    text = (DOCS / "metrics.md").read_text()
    assert [a for a in alerts if f"`{a}`" not in text] == []


def test_configuration_example_uses_the_images_known_hosts_path() -> None:
    text = (DOCS / "configuration.md").read_text()
    example = re.search(r"## Example\n.*?```toml\n(.*?)```", text, re.S)
    assert example, "docs/configuration.md has no example"
    shown = tomllib.loads(example.group(1))["primary"]["known_hosts"]
    shipped = tomllib.loads((REPO / "docker" / "syncagent.toml").read_text())
    assert shown == shipped["primary"]["known_hosts"]
    deployment = (REPO / "docker" / "kubernetes" / "secondary-deployment.yaml").read_text()
    assert f"mountPath: {Path(shown).parent}/" in deployment
