"""Local tables survive a clean shutdown only."""

from __future__ import annotations

from pathlib import Path

from stream.local_state import CLEAN_SHUTDOWN_MARK, mark_clean_shutdown, open_local_tables


def tables(tmp_path: Path) -> Path:
    table_dir = tmp_path / "v1" / "tables"
    (table_dir / "users-0.db").mkdir(parents=True)
    (table_dir / "users-0.db" / "000001.log").write_bytes(b"rows")
    return table_dir


def test_tables_left_by_a_run_that_did_not_stop_cleanly_are_discarded(tmp_path: Path) -> None:
    table_dir = tables(tmp_path)
    assert open_local_tables(tmp_path, table_dir) is False
    assert not table_dir.exists()


def test_tables_after_a_clean_shutdown_are_kept_once(tmp_path: Path) -> None:
    table_dir = tables(tmp_path)
    mark_clean_shutdown(tmp_path)
    assert open_local_tables(tmp_path, table_dir) is True
    assert (table_dir / "users-0.db" / "000001.log").read_bytes() == b"rows"
    # The mark is consumed: if this run is killed, the next start discards the tables.
    assert not (tmp_path / CLEAN_SHUTDOWN_MARK).exists()
    assert open_local_tables(tmp_path, table_dir) is False


def test_a_new_disk_needs_nothing(tmp_path: Path) -> None:
    assert open_local_tables(tmp_path, tmp_path / "v1" / "tables") is True
