"""The framework's floor for ``bench/worker_bench.py``: a faust-streaming agent that does nothing.

A minimal faust app (memory store, no tables, no web server) whose one agent consumes the
given topics and only counts what it sees. A timer writes the count to a status file
every 0.1 s, which the benchmark polls (as it polls ``nudge_events_total`` of the worker).

Run by the benchmark as a subprocess::

    NOOP_BOOTSTRAP=127.0.0.1:9092 NOOP_APP_ID=noop-x NOOP_TOPICS=a,b,c,d \\
    NOOP_STATUS=/tmp/noop.count NOOP_DATADIR=/tmp/noop \\
    .venv/bin/python bench/faust_noop.py worker --loglevel=warn
"""

from __future__ import annotations

import os
from pathlib import Path

import faust

BOOTSTRAP = os.environ["NOOP_BOOTSTRAP"]
TOPICS = os.environ["NOOP_TOPICS"].split(",")
STATUS = Path(os.environ["NOOP_STATUS"])

app = faust.App(
    os.environ["NOOP_APP_ID"],
    broker=[f"kafka://{host}" for host in BOOTSTRAP.split(",")],
    store="memory://",
    datadir=os.environ["NOOP_DATADIR"],
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    broker_commit_interval=1.0,
)
source = app.topic(*TOPICS, key_serializer="raw", value_serializer="raw")
seen = [0]


@app.agent(source)
async def noop(stream: faust.StreamT) -> None:
    async for _ in stream:
        seen[0] += 1


@app.timer(interval=0.1)
async def report() -> None:
    tmp = STATUS.with_suffix(".tmp")
    tmp.write_text(str(seen[0]))
    tmp.replace(STATUS)


if __name__ == "__main__":
    app.main()
