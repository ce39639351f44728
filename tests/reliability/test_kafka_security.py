"""Managed-Kafka authentication on a real broker (issue 23): TLS, SASL SCRAM, SASL OAUTHBEARER.

One broker of the test's own (``scripts/kafka.sh`` with extra listeners) serves four
listeners: PLAINTEXT (the test's own producer and reader), TLS (a CA and a broker
certificate made here with ``openssl``), SASL_PLAINTEXT with SCRAM-SHA-256 (a user created at
format time) and SASL_SSL with OAUTHBEARER (Kafka's unsecured JWS validator), as managed
Kafka services run it. A ``nudge worker`` runs once over each
secured listener, becomes ready and fires a cart reminder: every client of the worker (the
start-up checks, Faust's consumer and producer) authenticated, since the listener accepts
nothing else. The OAUTHBEARER run gets its token from an OAuth 2 client-credentials
endpoint served here. A wrong password, a rejected token and refused client credentials
stop the worker within seconds with one line naming the settings, the secret not in it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.harness import (
    NUDGE,
    ROOT,
    WorkerGroup,
    free_port,
    produce,
    read_all,
    wait_for,
)

# One broker for the module: with ``pytest -n 2 --dist loadgroup`` its tests share a process.
pytestmark = [
    pytest.mark.reliability,
    pytest.mark.integration,
    pytest.mark.xdist_group("secured_kafka"),
]

SCRAM_USER = "nudge-scram"
SCRAM_SECRET = "scram-secret-4b1d77"
CLIENT_ID = "nudge-client"
CLIENT_SECRET = "client-secret-9e02aa"
WRONG_SECRET = "wrong-secret-51c3f8"
OAUTH = "org.apache.kafka.common.security.oauthbearer"

RULES = """
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [1s], cooldown: 1s}
  browse_abandonment:      {enabled: false}
  replenishment:           {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing:                 {enabled: false}
  dormancy:                {enabled: false}
"""


def unsecured_jws(subject: str, lifetime: int = 3600) -> str:
    """A token Kafka's unsecured validator accepts: ``alg: none``, ``sub``, ``iat``, ``exp``."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + lifetime})}."


class TokenEndpoint:
    """An OAuth 2 token endpoint (client-credentials grant) issuing unsecured JWS tokens."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(
                    pair.split("=", 1) for pair in self.rfile.read(length).decode().split("&")
                )
                expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                endpoint.requests.append(form)
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self._answer(401, {"error": "invalid_client"})
                elif form.get("grant_type") != "client_credentials":
                    self._answer(400, {"error": "unsupported_grant_type"})
                else:
                    token = unsecured_jws("nudge-worker")
                    self._answer(200, {"access_token": token, "expires_in": 3600})

            def _answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_certificates(workdir: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1; returns (CA file, broker PEM keystore)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed (apt-get install openssl)"

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=workdir, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=nudge-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    run("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.pk8")
    keystore = workdir / "broker-keystore.pem"  # Kafka's PEM keystore: key, then chain
    keystore.write_text((workdir / "broker.pk8").read_text() + (workdir / "broker.crt").read_text())
    return workdir / "ca.crt", keystore


@dataclass
class SecuredKafka:
    plaintext: str
    tls: str
    scram: str
    oauth: str
    cafile: Path


@pytest.fixture(scope="module")
def secured_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    workdir = tmp_path_factory.mktemp("secured-kafka")
    cafile, keystore = make_certificates(workdir)
    ports = {name: free_port() for name in ("TLS", "SCRAM", "OAUTH")}
    extra = workdir / "listeners.properties"
    extra.write_text(
        f"listener.name.tls.ssl.keystore.type=PEM\n"
        f"listener.name.tls.ssl.keystore.location={keystore}\n"
        "listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-256\n"
        "listener.name.scram.scram-sha-256.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        f"listener.name.oauth.ssl.keystore.type=PEM\n"
        f"listener.name.oauth.ssl.keystore.location={keystore}\n"
        "listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER\n"
        f"listener.name.oauth.oauthbearer.sasl.jaas.config={OAUTH}.OAuthBearerLoginModule "
        'required unsecuredLoginStringClaim_sub="broker";\n'
        "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class="
        f"{OAUTH}.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler\n"
    )
    env = {
        **os.environ,
        "KAFKA_PORT": "auto",
        "KAFKA_DIR": str(workdir / "kafka"),
        "KAFKA_EXTRA_LISTENERS": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "KAFKA_EXTRA_PROTOCOL_MAP": "TLS:SSL,SCRAM:SASL_PLAINTEXT,OAUTH:SASL_SSL",
        "KAFKA_EXTRA_CONFIG": str(extra),
        "KAFKA_FORMAT_ARGS": (
            f"--add-scram SCRAM-SHA-256=[name={SCRAM_USER},password={SCRAM_SECRET}]"
        ),
    }
    script = str(ROOT / "scripts" / "kafka.sh")
    out = subprocess.run([script, "start"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"secured broker did not start:\n{out.stderr[-3000:]}"
    bootstrap = next(
        line.split("=", 1)[1]
        for line in out.stdout.splitlines()
        if line.startswith("NUDGE_KAFKA_BOOTSTRAP=")
    )
    try:
        yield SecuredKafka(
            plaintext=bootstrap,
            tls=f"127.0.0.1:{ports['TLS']}",
            scram=f"127.0.0.1:{ports['SCRAM']}",
            oauth=f"127.0.0.1:{ports['OAUTH']}",
            cafile=cafile,
        )
    finally:
        subprocess.run([script, "stop"], env=env, check=False)


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    yield endpoint
    endpoint.stop()


def listener_env(kafka: SecuredKafka, endpoint: TokenEndpoint, listener: str) -> dict[str, str]:
    if listener == "tls":
        return {
            "NUDGE_KAFKA_BOOTSTRAP": kafka.tls,
            "NUDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "NUDGE_KAFKA_SSL_CAFILE": str(kafka.cafile),
        }
    if listener == "scram":
        return {
            "NUDGE_KAFKA_BOOTSTRAP": kafka.scram,
            "NUDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "NUDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "NUDGE_KAFKA_SASL_USERNAME": SCRAM_USER,
            "NUDGE_KAFKA_SASL_PASSWORD": SCRAM_SECRET,
        }
    return {
        "NUDGE_KAFKA_BOOTSTRAP": kafka.oauth,
        "NUDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "NUDGE_KAFKA_SSL_CAFILE": str(kafka.cafile),
        "NUDGE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "NUDGE_KAFKA_OAUTH_TOKEN_URL": endpoint.url,
        "NUDGE_KAFKA_OAUTH_CLIENT_ID": CLIENT_ID,
        "NUDGE_KAFKA_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "NUDGE_KAFKA_OAUTH_SCOPE": "kafka",
    }


def new_group(
    kafka: SecuredKafka, redis_url: str, workdir: Path, env: dict[str, str]
) -> WorkerGroup:
    """The group's own producer and reader use the PLAINTEXT listener; the worker ``env``."""
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    return WorkerGroup(kafka.plaintext, redis_url, rules, workdir, partitions=2, extra_env=env)


@pytest.mark.parametrize("listener", ["tls", "scram", "oauth"])
async def test_worker_runs_over_each_secured_listener(
    secured_kafka: SecuredKafka,
    token_endpoint: TokenEndpoint,
    redis_url: str,
    tmp_path: Path,
    listener: str,
) -> None:
    env = listener_env(secured_kafka, token_endpoint, listener)
    group = new_group(secured_kafka, redis_url, tmp_path, env)
    fetched = len(token_endpoint.requests)
    try:
        worker = group.start()
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await produce(
            group,
            [{"event_id": f"{listener}-1", "type": "cart_item_added", "user_id": f"u-{listener}",
              "ts": now, "product_id": "p-1", "unit_price": 3.0}],
        )  # fmt: skip
        sent = await wait_for(
            group, "triggers", lambda rs: any(r["user_id"] == f"u-{listener}" for r in rs)
        )
        assert sent[0]["trigger"] == "cart_abandonment"
        log = worker.log_path.read_text(errors="replace")
        for secret in (SCRAM_SECRET, CLIENT_SECRET):
            assert secret not in log
    finally:
        group.stop_all()
    if listener == "oauth":
        new = token_endpoint.requests[fetched:]
        assert new and all(r == {"grant_type": "client_credentials", "scope": "kafka"} for r in new)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong-password", "NUDGE_KAFKA_SASL_PASSWORD"),
        ("rejected-token", "NUDGE_KAFKA_OAUTH_TOKEN"),
        ("refused-client", "NUDGE_KAFKA_OAUTH_CLIENT_SECRET"),
    ],
)
async def test_refused_credentials_fail_fast_naming_the_settings(
    secured_kafka: SecuredKafka,
    token_endpoint: TokenEndpoint,
    redis_url: str,
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    if case == "wrong-password":
        env = {**listener_env(secured_kafka, token_endpoint, "scram")}
        env["NUDGE_KAFKA_SASL_PASSWORD"] = WRONG_SECRET
    elif case == "rejected-token":  # not a JWS: Kafka's validator rejects it
        env = {**listener_env(secured_kafka, token_endpoint, "oauth")}
        env = {k: v for k, v in env.items() if "OAUTH_" not in k}
        env["NUDGE_KAFKA_OAUTH_TOKEN"] = WRONG_SECRET
    else:
        env = {**listener_env(secured_kafka, token_endpoint, "oauth")}
        env["NUDGE_KAFKA_OAUTH_CLIENT_SECRET"] = WRONG_SECRET
    group = new_group(secured_kafka, redis_url, tmp_path, env)
    started = time.monotonic()
    worker = group.start(wait_ready=False)
    try:
        code = await asyncio.to_thread(worker.proc.wait, 20)
    finally:
        group.stop_all()
    elapsed = time.monotonic() - started
    log = worker.log_path.read_text(errors="replace")
    errors = [line for line in log.splitlines() if '"level":"error"' in line]
    assert code == 2 and elapsed < 15, (code, elapsed, log[-2000:])
    assert len(errors) == 1 and expected in errors[0], log[-2000:]
    assert WRONG_SECRET not in log and CLIENT_SECRET not in log


async def test_commands_authenticate_with_the_same_settings(
    secured_kafka: SecuredKafka, token_endpoint: TokenEndpoint, redis_url: str, tmp_path: Path
) -> None:
    """``nudge simulate`` (an aiokafka producer) over OAUTHBEARER; a wrong password: one line."""
    group = new_group(secured_kafka, redis_url, tmp_path, {})
    await asyncio.to_thread(group.create_input_topics)
    base = {**group.env(0, free_port()), "NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS": "20"}
    command = [NUDGE, "simulate", "--limit", "20", "--rate", "1000", "--users", "5"]
    oauth = {**base, **listener_env(secured_kafka, token_endpoint, "oauth")}
    done = await asyncio.to_thread(
        subprocess.run, command, env=oauth, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    topics = ("browse", "cart", "order", "prefs")
    counts = [len(await read_all(group, key)) for key in topics]
    assert sum(counts) == 20, counts
    scram = {**base, **listener_env(secured_kafka, token_endpoint, "scram")}
    scram["NUDGE_KAFKA_SASL_PASSWORD"] = WRONG_SECRET
    started = time.monotonic()
    refused = await asyncio.to_thread(
        subprocess.run, command, env=scram, capture_output=True, text=True, timeout=60
    )
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and time.monotonic() - started < 15, refused.stderr[-2000:]
    assert len(lines) == 1 and "NUDGE_KAFKA_SASL_PASSWORD" in lines[0], lines
    assert WRONG_SECRET not in refused.stderr + refused.stdout
