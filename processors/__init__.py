"""Processors: the Faust app and its agents (see issue 5)."""
