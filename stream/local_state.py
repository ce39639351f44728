"""The local copy of the users table is trusted only after a clean shutdown.

The users table lives in RocksDB on the worker's disk, and its changelog topic is the
source of truth. A row is written to RocksDB at once and to the changelog
asynchronously; the input message is acknowledged only when the changelog has it. A
worker killed in between (``kill -9``, OOM, node loss) leaves rows on its disk that the
changelog never got. Faust, restarting on that disk, keeps them: the unacknowledged
message is read again, the engine sees its event id in the state and calls it a
duplicate, writes nothing, and emits nothing — a reminder that was fired but never
sent is then lost, and the changelog stays behind the disk.

So the worker marks a clean shutdown in its data directory, and at start-up discards
its local tables unless that mark is there: the state is then recovered from the
changelog, as on a new disk (what Kafka Streams does after an unclean shutdown under
exactly-once). A graceful stop (SIGTERM: a rolling deploy, a scale-in) keeps the disk.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger("nudge.local_state")

CLEAN_SHUTDOWN_MARK = "clean-shutdown"


def open_local_tables(data_dir: Path, table_dir: Path) -> bool:
    """Before start-up: keep the local tables only if the last run ended cleanly.

    Returns whether they were kept. The mark is removed, so that a run that does not
    end cleanly leaves none.
    """
    mark = data_dir / CLEAN_SHUTDOWN_MARK
    clean = mark.exists()
    mark.unlink(missing_ok=True)
    if clean or not table_dir.exists():
        return True
    log.warning(
        "the last run did not shut down cleanly: local tables discarded, "
        "state is recovered from the changelog"
    )
    shutil.rmtree(table_dir)
    return False


def mark_clean_shutdown(data_dir: Path) -> None:
    """After the worker stopped gracefully (its producer flushed, its tables closed)."""
    (data_dir / CLEAN_SHUTDOWN_MARK).touch()
