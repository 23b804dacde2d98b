"""Prometheus metrics, NaN accounting, drift and live verification (later issue)."""
