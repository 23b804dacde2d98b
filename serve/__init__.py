"""The nowcast worker, scorer backends, grid stores, outputs and the HTTP API (later issue)."""
