"""Metrics, tracing and OTLP export."""
