"""Service settings, read from the environment (prefix ``NUDGE_``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Example: ``NUDGE_KAFKA_BOOTSTRAP=kafka:9092``."""

    model_config = SettingsConfigDict(env_prefix="NUDGE_", env_file=".env", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_session_timeout_seconds: float = Field(default=15.0, ge=6.0)
    app_id: str = "nudge"
    partitions: int = Field(default=8, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    # Topics (defaults from the contract)
    topic_browse: str = "shop.browse"
    topic_cart: str = "shop.cart"
    topic_order: str = "shop.order"
    topic_prefs: str = "shop.prefs"
    topic_triggers: str = "marketing.triggers"
    topic_audit: str = "marketing.triggers.audit"
    topic_dlq: str = "shop.events.dlq"
    topic_ticks: str = "nudge.ticks"

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
    log_level: str = "INFO"

    @property
    def input_topics(self) -> tuple[str, str, str, str]:
        return (self.topic_browse, self.topic_cart, self.topic_order, self.topic_prefs)
