# syntax=docker/dockerfile:1
# Nudge worker image.
#   docker build -t nudge:local .
#   docker run --rm -e NUDGE_KAFKA_BOOTSTRAP=kafka:9092 -e NUDGE_REDIS_URL=redis://redis:6379/0 \
#     -v nudge-data:/var/lib/nudge -p 6066:6066 nudge:local            # = nudge worker
#   docker run --rm -e NUDGE_KAFKA_BOOTSTRAP=kafka:9092 nudge:local simulate --rate 20
# Configuration is environment only (NUDGE_*); no credential is baked into the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: wheels for Nudge and its dependencies, installed into a venv ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY triggers ./triggers
COPY stream ./stream
COPY cli ./cli
COPY simulation ./simulation
# constraints.txt pins every dependency to the version the tests ran with (reproducible).
RUN python -m pip wheel --wheel-dir /wheels -c constraints.txt . \
 && python -m venv /opt/nudge \
 && /opt/nudge/bin/pip install --no-index --find-links /wheels -c constraints.txt nudge \
 && /opt/nudge/bin/nudge --help >/dev/null

# ---- runtime: the venv only, as an unprivileged user ---------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="nudge" \
      org.opencontainers.image.description="Real-time marketing trigger engine for e-commerce" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/nudge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUDGE_DATA_DIR=/var/lib/nudge \
    NUDGE_WEB_PORT=6066
RUN groupadd --system --gid 10001 nudge \
 && useradd --system --uid 10001 --gid nudge --home-dir /var/lib/nudge --no-create-home \
      --shell /usr/sbin/nologin nudge \
 && mkdir -p /var/lib/nudge \
 && chown nudge:nudge /var/lib/nudge
COPY --from=builder /opt/nudge /opt/nudge
USER 10001:10001
WORKDIR /var/lib/nudge
# RocksDB table state (a cache of the changelog topics: a fresh volume is rebuilt from Kafka).
VOLUME ["/var/lib/nudge"]
EXPOSE 6066
# slim has no curl: probe /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('NUDGE_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["nudge"]
CMD ["worker"]
