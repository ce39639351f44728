"""The documentation says what the code does: the contract ships in the repository, links
resolve inside it, and the worked examples and facts quoted in the READMEs are the real ones."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest

from cli.main import main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The team's source of the contract: beside the clone (CI puts a copy of shared/ there too).
SHARED_CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"
DOCS = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_contract_ships_in_the_repository_identical_to_the_teams() -> None:
    shipped = ROOT / "docs" / "contract.md"
    assert shipped.read_text().startswith("# Nudge — the wire contract")
    if not SHARED_CONTRACT.exists():
        pytest.skip(f"{SHARED_CONTRACT} is not beside this clone")
    assert shipped.read_bytes() == SHARED_CONTRACT.read_bytes(), (
        f"docs/contract.md differs from {SHARED_CONTRACT}: copy it over (cp {SHARED_CONTRACT}"
        " docs/contract.md)"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name}: {target} points outside the repository"
        assert path.exists(), f"{doc.name}: {target} does not exist"


def test_the_readme_points_at_the_contract_and_the_key_to_use() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/contract.md)" in readme
    assert "key = user_id saves a hop" in readme


def _console_example(readme: str, command_prefix: str) -> tuple[list[str], list[str]]:
    """The command and the output lines of the README's console block running it."""
    for block in re.findall(r"```console\n(.*?)```", readme, flags=re.S):
        first, *output = block.splitlines()
        if first.startswith(f"$ {command_prefix}"):
            return shlex.split(first[2:])[1:], output
    raise AssertionError(f"no console example of {command_prefix!r} in the README")


def test_the_readme_replay_example_is_what_replay_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    argv, shown = _console_example(readme, "nudge replay examples/shop.jsonl")
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out.jsonl"
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().err.splitlines()
    assert shown[-1] == "..."
    assert printed[: len(shown) - 1] == shown[:-1]
    # The shortened records below the console block are the decisions, in order.
    table = re.search(r"stdout gets the records.*?```\n(.*?)```", readme, flags=re.S)
    assert table is not None
    decisions = [
        orjson.loads(line) for line in out.read_bytes().splitlines() if b'"decision"' in line
    ]
    rows = [
        [
            d["user_id"],
            d["trigger"],
            str(d["stage"]),
            d["status"],
            d["fired_at"],
            d["segment"],
            d["offer"] or "-",
        ]
        for d in decisions
    ]
    assert rows == [line.split() for line in table.group(1).splitlines()]


def test_deploy_readme_names_the_tables_the_worker_has() -> None:
    text = (ROOT / "deploy" / "README.md").read_text()
    sentence = re.search(r"standbys, of each table: ([^.]*)\.", text)
    assert sentence is not None, "deploy/README.md no longer names the tables"
    named = set(re.findall(r"`(\w+)`", sentence.group(1))) - {"back_in_stock", "price_drop"}
    source = "\n".join(path.read_text() for path in (ROOT / "stream").glob("*.py"))
    tables = set(re.findall(r"app\.Table\(\s*\"(\w+)\"", source))
    assert tables and named == tables


def test_deploy_readme_lists_the_image_allow_list_as_it_is() -> None:
    text = " ".join((ROOT / "deploy" / "README.md").read_text().split())
    listed = re.search(r"\(`\.dockerignore`: ([^)]*)\)", text)
    assert listed is not None
    named = set(re.findall(r"`([^`]+)`", listed.group(1)))
    allowed = {  # `!cli/` and `!cli/**` are the folder `cli/`
        line[1:].removesuffix("**")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert named == allowed
