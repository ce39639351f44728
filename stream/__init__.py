"""Nudge's live service: the faust-streaming application around the core engine."""
