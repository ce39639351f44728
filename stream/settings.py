"""Service settings, read from the environment (prefix ``NUDGE_``) or a ``.env`` file.

:func:`load_settings` validates everything before anything connects: a wrong value
becomes one readable :class:`SettingsError` naming the variable, and a ``NUDGE_*``
name that is no setting (a typo) becomes a warning with the closest real name.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "NUDGE_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The table stores Nudge supports (Faust's RocksDB and in-memory stores).
STORES = ("rocksdb://", "memory://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    """Everything an operator can set. Example: ``NUDGE_KAFKA_BOOTSTRAP=kafka:9092``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = (
        "PLAIN"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # OAUTHBEARER (stream.oauth_token): a static token, a token file re-read at every
    # connection, or an OAuth 2 client-credentials token endpoint.
    kafka_oauth_token: SecretStr | None = None
    kafka_oauth_token_file: Path | None = None
    kafka_oauth_token_url: str | None = None
    kafka_oauth_client_id: str | None = None
    kafka_oauth_client_secret: SecretStr | None = None
    kafka_oauth_scope: str | None = None
    # SASL extensions sent with the token, KEY=VALUE comma-separated (Confluent Cloud:
    # logicalCluster=lkc-...,identityPoolId=pool-...).
    kafka_oauth_extensions: str | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_session_timeout_seconds: float = Field(default=15.0, ge=6.0)
    # One deadline for reaching Kafka at start-up (the broker may still be starting beside
    # us); an unknown host name or a port that does not speak Kafka fails at once.
    kafka_startup_timeout_seconds: float = Field(default=30.0, gt=0)
    # /readyz answers 503 (nudge_ready 0) when the consumer group's coordinator has not
    # answered the worker for this long: it cannot make progress (stream.progress).
    kafka_progress_timeout_seconds: float = Field(default=30.0, gt=0)
    app_id: str = "nudge"
    # The worker's partition count N (users table, internal topics). Unset: the internal
    # topics' count if they exist, else the largest input topic's (stream.topics).
    partitions: int | None = Field(default=None, ge=1)
    # Unset: min(3, the number of brokers), read from the cluster at start-up (stream.topics).
    replication_factor: int | None = Field(default=None, ge=1)

    # Topics (defaults from the contract)
    topic_browse: str = Field(default="shop.browse", min_length=1)
    topic_cart: str = Field(default="shop.cart", min_length=1)
    topic_order: str = Field(default="shop.order", min_length=1)
    topic_prefs: str = Field(default="shop.prefs", min_length=1)
    # Delivery feedback (contract 8.3), written by the shop's delivery providers. An input
    # like the four above, except that the worker creates it (N partitions) when missing.
    topic_engagement: str = Field(default="marketing.engagement", min_length=1)
    # Catalog events (contract 7.1, keyed by product). `nudge simulate` writes them here
    # (--new-triggers, or a file's product_updated lines); the worker reads them when
    # back_in_stock or price_drop is on (the catalog fan-out, docs/protocol.md).
    topic_catalog: str = Field(default="shop.catalog", min_length=1)
    topic_triggers: str = Field(default="marketing.triggers", min_length=1)
    topic_audit: str = Field(default="marketing.triggers.audit", min_length=1)
    topic_dlq: str = Field(default="shop.events.dlq", min_length=1)
    topic_ticks: str = Field(default="nudge.ticks", min_length=1)
    # Input messages on a partition that is not their user's, re-keyed by user_id (N
    # partitions, created by the worker; docs/protocol.md, "Re-keying").
    topic_rekeyed: str = Field(default="nudge.rekeyed", min_length=1)
    # A re-keyed source partition silent this long is left out of the re-keying
    # watermark, and an event waits at most this long for it (a dead worker delays,
    # never stalls); sources announce how far they have read this often.
    rekey_max_hold_seconds: float = Field(default=30.0, gt=0)
    rekey_mark_interval_seconds: float = Field(default=0.25, ge=0)
    # "misplaced": only messages on another partition than their user's cross the
    # re-keying topic; "all": every input message does (measured in docs/benchmarks.md).
    rekey: Literal["misplaced", "all"] = "misplaced"
    # The catalog fan-out's internal topics (created only when a catalog trigger is on).
    topic_interest: str = Field(default="nudge.interest", min_length=1)
    topic_fanout: str = Field(default="nudge.catalog-fanout", min_length=1)
    # A catalog event waits at most this long for the user partitions' interest (and a
    # silent partition's watermark is left out after it); watermarks go out this often.
    catalog_max_hold_seconds: float = Field(default=30.0, gt=0)
    catalog_mark_interval_seconds: float = Field(default=0.25, ge=0)

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None
    redis_suppression_key: str = "nudge:suppressed"
    redis_key_prefix: str = "nudge:"

    # Engine and service
    rules_path: Path | None = None
    data_dir: Path = Path("var/nudge")
    store: str = "rocksdb://"
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_host: str = "0.0.0.0"
    max_message_bytes: int = Field(default=65536, ge=1024)
    tick_interval_seconds: float = Field(default=0.25, gt=0)
    # Deadlines fire this long after they are due, so an event produced just before a
    # deadline but still in flight (in the broker, in a fetch) is applied first.
    fire_grace_seconds: float = Field(default=0.25, ge=0)
    # After a restart or rebalance, a partition's events from its four topics are applied
    # in event-time order; an event waits at most this long for the other topics.
    order_max_hold_seconds: float = Field(default=2.0, ge=0)
    # After every assignment, trigger ids sent to the output topic this long ago or less
    # are read back and never sent again (a crash between a send and its bookkeeping).
    recent_sends_window_seconds: float = Field(default=600.0, ge=0)
    # The users changelog is created with this max.compaction.lag.ms: an erased user's
    # earlier records are compacted away within it (contract 8.5; 7 days).
    changelog_max_compaction_lag_seconds: float = Field(default=604_800.0, gt=0)
    log_level: str = "INFO"
    # The admin endpoint GET /admin/users/{user_id} (stream.admin) is served only when set,
    # to requests that carry it as "Authorization: Bearer <token>".
    admin_token: SecretStr | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (any case)")
            return level
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _long_token(cls, value: object) -> object:
        if isinstance(value, str) and not value:
            return None  # NUDGE_ADMIN_TOKEN= : off
        if isinstance(value, str) and len(value) < 16:
            raise ValueError("must be at least 16 characters (unset: the admin endpoint is off)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.lower().startswith(REDIS_SCHEMES):
            raise ValueError(
                "is not a Redis URL: expected redis://HOST:PORT/DB, rediss://HOST:PORT/DB "
                "(TLS) or unix:///path/to/redis.sock"
            )
        return value

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value.lower() not in STORES:
            raise ValueError(
                f"is not a supported store: use {' or '.join(STORES)} "
                "(rocksdb:// keeps the tables on disk under NUDGE_DATA_DIR, the default; "
                "memory:// rebuilds them from Kafka at every start)"
            )
        return value.lower()

    @model_validator(mode="after")
    def _sasl_credentials(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL") and self.kafka_sasl_mechanism == "OAUTHBEARER":
            from stream.oauth_token import oauth_settings_problem

            if problem := oauth_settings_problem(self):
                raise ValueError(problem)
            return self
        if protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            missing = [
                env_name(field)
                for field in ("kafka_sasl_username", "kafka_sasl_password")
                if not getattr(self, field)
            ]
            raise ValueError(
                f"NUDGE_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)} "
                f"(mechanism NUDGE_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism}); "
                "without SASL use SSL or PLAINTEXT"
            )
        return self

    @field_validator("kafka_bootstrap")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        bootstrap_addresses(value)
        return value

    @property
    def input_topics(self) -> tuple[str, ...]:
        """The topics of user events: the shop's four, then the engagement feedback."""
        return (
            self.topic_browse,
            self.topic_cart,
            self.topic_order,
            self.topic_prefs,
            self.topic_engagement,
        )


class SettingsError(ValueError):
    """Settings that cannot work; the message names every offending variable.

    ``warnings``: the unknown ``NUDGE_*`` names, which may well explain the error.
    """

    def __init__(self, message: str, warnings: list[str] | None = None) -> None:
        super().__init__(message)
        self.warnings = warnings or []


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``"a:9092,b:9093"`` -> ``[("a", 9092), ("b", 9093)]``; ValueError names a bad entry."""
    addresses = []
    for entry in (part.strip() for part in bootstrap.split(",")):
        host, sep, port = entry.rpartition(":")
        host = host.strip("[]")  # [::1]:9092
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"{entry!r} is not HOST:PORT (expected e.g. kafka-1:9092,kafka-2:9092)"
            )
        addresses.append((host, int(port)))
    return addresses


def env_name(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def setting_names() -> list[str]:
    return [env_name(field) for field in Settings.model_fields]


def unknown_setting_warnings(names: Iterable[str]) -> list[str]:
    """One warning per ``NUDGE_*`` name that is not a setting, with the closest real name."""
    known = setting_names()
    warnings = []
    for name in sorted(set(names)):
        if not name.upper().startswith(PREFIX) or name.upper() in known:
            continue
        # Compared without the prefix, which every name shares.
        suffixes = [k.removeprefix(PREFIX) for k in known]
        close = difflib.get_close_matches(name.upper()[len(PREFIX) :], suffixes, n=1, cutoff=0.6)
        hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
        warnings.append(f"{name} is not a Nudge setting and is ignored{hint}")
    return warnings


def describe_errors(error: ValidationError) -> str:
    """A pydantic error as one line per variable: ``NUDGE_X='value': reason``."""
    fields = Settings.model_fields
    secret = {name for name, field in fields.items() if "SecretStr" in str(field.annotation)}
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        name = env_name(field) if field in Settings.model_fields else field
        reason = item["msg"].removeprefix("Value error, ")
        if not field:  # a check of several settings: its message names them
            lines.append(reason)
        elif field in secret or "input" not in item:
            lines.append(f"{name}: {reason}")
        else:
            lines.append(f"{name}={item['input']!r}: {reason}")
    return "; ".join(lines)


def env_file_names(path: Path = Path(".env")) -> list[str]:
    return [str(name) for name in dotenv_values(path)] if path.is_file() else []


def load_settings() -> tuple[Settings, list[str]]:
    """Validated settings, and warnings about ``NUDGE_*`` names (environment, ``.env``) that
    are no setting. Raises :class:`SettingsError`, one readable message for every bad value.
    """
    warnings = unknown_setting_warnings([*os.environ, *env_file_names()])
    try:
        return Settings(), warnings
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc), warnings) from None
