"""The container image, checked without a Docker engine.

The Dockerfile is read instruction by instruction; the build context is computed
from .dockerignore with Docker's matching rules; the builder stage's wheel is
built from exactly that context and its CLI run; the HEALTHCHECK command is run
against a real HTTP server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stream.settings import Settings
from tests.deploy.deploy_support import ROOT

pytestmark = pytest.mark.unit

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = args.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def env_pairs(args: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(args) if "=" in token)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line[1:].strip() if include else line
        pattern = os.path.normpath(pattern.strip("/")).replace(os.sep, "/")
        rules.append((include, _pattern_regex(pattern)))
    return rules


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for include, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            included = include
    return included


def build_context_files() -> list[str]:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    files = []
    for path in ROOT.rglob("*"):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith((".git/", ".venv/")):
                continue
            if in_build_context(rel, rules):
                files.append(rel)
    return sorted(files)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = dockerignore_rules("**\n!stream/\n!stream/**\n**/__pycache__\n!README.md\n")
    assert in_build_context("stream/app.py", rules)
    assert in_build_context("README.md", rules)
    assert not in_build_context("stream/__pycache__/app.cpython-311.pyc", rules)
    assert not in_build_context(".env", rules)
    assert not in_build_context("var/kafka/data/x.log", rules)


def test_image_is_multi_stage_on_slim_python_311(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "builder and runtime stages"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    builder, runtime = stages[0], stages[-1]
    assert builder.name, "the builder stage is named"
    assert any("wheel" in run for run in builder.all("RUN")), "the builder builds wheels"
    copies = runtime.all("COPY")
    assert any(f"--from={builder.name}" in copy for copy in copies), copies
    assert not any("pip wheel" in run for run in runtime.all("RUN")), "no build at run time"


def test_image_runs_as_non_root_with_data_on_a_volume(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}, users
    env: dict[str, str] = {}
    for args in runtime.all("ENV"):
        env.update(env_pairs(args))
    assert env["NUDGE_DATA_DIR"] == "/var/lib/nudge"
    volumes = [v for args in runtime.all("VOLUME") for v in json.loads(args)]
    assert env["NUDGE_DATA_DIR"] in volumes
    created = " ".join(runtime.all("RUN"))
    assert "chown" in created and "/var/lib/nudge" in created, "the data dir belongs to the user"


def test_entrypoint_is_nudge_worker_on_the_settings_port(stages: list[Stage]) -> None:
    runtime = stages[-1]
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["nudge"]
    assert json.loads(runtime.all("CMD")[-1]) == ["worker"]
    assert runtime.all("EXPOSE") == [str(Settings.model_fields["web_port"].default)]


def test_image_configuration_holds_no_secret(stages: list[Stage]) -> None:
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY\b|KEYFILE", re.IGNORECASE)
    for stage in stages:
        for keyword in ("ENV", "ARG", "LABEL"):
            for args in stage.all(keyword):
                names = env_pairs(args) or {args.split("=")[0]: ""}
                leaked = [name for name in names if secret.search(name)]
                assert not leaked, f"{keyword} {args}"


def test_build_context_is_only_the_sources(stages: list[Stage]) -> None:
    files = build_context_files()
    assert "pyproject.toml" in files
    assert any(f.startswith("stream/") for f in files)
    assert any(f.startswith("triggers/") for f in files)
    allowed = re.compile(
        r"(pyproject\.toml|README\.md|LICENSE|constraints\.txt"
        r"|(stream|cli|simulation)/.*\.py|triggers/.*)"
    )
    stray = [f for f in files if not allowed.fullmatch(f)]
    assert not stray, f"files outside the sources reach the build context: {stray[:20]}"
    assert not any(f.endswith((".pyc", ".env", ".pem", ".key")) for f in files)
    # Every COPY from the context names something the context holds.
    for stage in stages:
        for args in stage.all("COPY"):
            tokens = [t for t in shlex.split(args) if not t.startswith("--")]
            if "--from=" in args:
                continue
            for source in tokens[:-1]:
                assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in files), (
                    f"COPY {source}: not in the build context (check .dockerignore)"
                )


def test_wheel_built_from_the_build_context_runs_the_cli(tmp_path: Path) -> None:
    """What the builder stage does: `pip wheel .` on the context, then `nudge` from the wheel."""
    context = tmp_path / "context"
    for rel in build_context_files():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "--wheel-dir",
            str(wheels),
            str(context),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("nudge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "nudge = cli.main:main" in archive.read(entry_points).decode()
    assert "cli/main.py" in names and "stream/app.py" in names
    assert any(n.startswith("simulation/") for n in names)
    assert any(n.startswith("triggers/") for n in names)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The wheel's own copy of the package (not the editable checkout) answers.
    probe = (
        "import cli, sys; from cli.main import main; "
        f"assert cli.__file__.startswith({str(site)!r}), cli.__file__; "
        "sys.argv = ['nudge', 'worker', '--help']; main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "usage: nudge worker" in out.stdout


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck_command(stages: list[Stage]) -> list[str]:
    (args,) = stages[-1].all("HEALTHCHECK")
    command = json.loads(args[args.index("CMD") + len("CMD") :].strip())
    assert command[0] == "python", "slim has no curl: the probe is Python's urllib"
    return [sys.executable, *command[1:]]


def test_healthcheck_passes_on_healthz_and_fails_otherwise(
    stages: list[Stage], http_server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    command = _healthcheck_command(stages)
    assert "/healthz" in command[-1]
    port = str(http_server.server_address[1])
    env = {**os.environ, "NUDGE_WEB_PORT": port}

    def probe(environ: dict[str, str]) -> int:
        return subprocess.run(
            command, env=environ, cwd=tmp_path, capture_output=True, timeout=30, check=False
        ).returncode

    _Handler.status = 200
    assert probe(env) == 0
    _Handler.status = 503
    assert probe(env) != 0
    _Handler.status = 200
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = str(sock.getsockname()[1])
    assert probe({**env, "NUDGE_WEB_PORT": closed}) != 0
