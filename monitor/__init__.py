"""Watching the service: metric names, input quality and NaN accounting, feature drift, live verification."""
