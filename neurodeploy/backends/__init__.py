"""Execution backends (Lava)."""
