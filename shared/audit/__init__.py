"""Audit events: the record, the sink, the store, the admin API."""
