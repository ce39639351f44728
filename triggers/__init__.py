"""Nudge's pure, deterministic trigger engine.

Nothing in this package talks to Kafka, Redis or Prometheus, or reads the wall
clock: time always comes in as an argument. The live service (``stream``) and
``nudge replay`` run exactly this code.
"""
