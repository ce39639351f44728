"""Packaging: the licence file matches the metadata; the image installs pinned versions; the
wheel carries the metadata and the commented rules example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
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


EXAMPLE = ROOT / "rules.example.yaml"
PACKAGED_EXAMPLE = ROOT / "triggers" / "rules.example.yaml"


def test_the_packaged_rules_example_is_the_repositorys() -> None:
    assert PACKAGED_EXAMPLE.read_bytes() == EXAMPLE.read_bytes(), (
        "triggers/rules.example.yaml differs from rules.example.yaml: "
        "cp rules.example.yaml triggers/rules.example.yaml"
    )
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "rules.example.yaml" in package_data["package-data"]["triggers"]


def test_the_metadata_says_what_nudge_is_for_an_index() -> None:
    classifiers = PROJECT["classifiers"]
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert not any(c.startswith("License :: ") for c in classifiers)  # PEP 639: `license`
    assert PROJECT["keywords"] and PROJECT["description"]


def test_the_wheel_ships_the_rules_example_that_errors_point_at(tmp_path: Path) -> None:
    """What a user installs: the wheel (built from a copy of the sources, in isolation) holds
    the commented example and its metadata, and a rules error names the installed file."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    for package in ("triggers", "stream", "cli", "simulation"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = [*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("nudge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("triggers/rules.example.yaml") == EXAMPLE.read_bytes()
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata_text = archive.read(meta).decode()
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata_text
    install = [*pip, "install", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    probe = (
        "from triggers.rules import RulesError, parse_rules\n"
        "try:\n    parse_rules('- a list')\n"
        "except RulesError as exc:\n    print(str(exc).rsplit(' see ', 1)[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    named = Path(done.stdout.strip())
    assert named == site / "triggers" / "rules.example.yaml"
    assert named.read_bytes() == EXAMPLE.read_bytes()
