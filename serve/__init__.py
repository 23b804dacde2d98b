"""Online serving: scorers, the nowcast worker, hot-swap, grid stores, products, the HTTP API and viewer, alerts."""
