"""Baseline apps measured next to ours in the same run (see bench/README.md)."""
