"""The ``nudge`` command line: argument parsing, printing, exit codes (no engine logic)."""
