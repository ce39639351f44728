"""Simulated shop traffic for benchmarks, the live demo and tests (not part of the engine)."""
