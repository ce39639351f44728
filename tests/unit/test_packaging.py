"""Packaging: the licence file matches the metadata; the image installs pinned versions."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not NAME==VERSION"
            found[canonicalize_name(name)] = version
    return found


def test_the_licence_file_is_the_apache_2_licence_the_metadata_names() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) == 202  # the full text, not a notice


def test_every_dependency_is_pinned_to_the_installed_version() -> None:
    pinned = pins()
    assert "nudge" not in pinned  # the project itself is built from the context
    for spec in PROJECT["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name]), (name, pinned[name])
        assert metadata.version(requirement.name) == pinned[name], (
            f"{name}: installed {metadata.version(requirement.name)}, pinned {pinned[name]}:"
            " regenerate constraints.txt"
        )


def test_the_image_installs_with_the_constraints_and_ships_the_licence() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip (?:wheel|install) [^\n]*", dockerfile)
    assert len(installs) == 2 and all("-c constraints.txt" in line for line in installs)
    assert re.search(r"^COPY [^\n]*\bLICENSE\b[^\n]*\bconstraints\.txt\b", dockerfile, re.M)
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!LICENSE" in allowed and "!constraints.txt" in allowed
    for package in ("triggers", "stream", "cli", "simulation"):
        assert f"COPY {package} ./{package}" in dockerfile
        assert f"!{package}/**" in allowed


def test_the_developer_setup_installs_the_same_pins_as_the_image() -> None:
    # A new release upstream must not change what a fresh clone's ./dev setup (and CI) runs.
    dev = (ROOT / "dev").read_text()
    installs = [line for line in dev.splitlines() if "pip install" in line and "-e " in line]
    assert installs and all("-c constraints.txt" in line for line in installs)
    assert "constraints.txt -nt" in dev  # a moved pin reinstalls
    refresh = (ROOT / "scripts" / "refresh_pins.sh").read_text()
    assert "pip freeze" in refresh and "constraints.txt" in refresh
