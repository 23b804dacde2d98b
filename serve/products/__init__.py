"""What forecasters get out of a stored grid: contours, PNG overlays, point series, and georeferenced rasters.

Pure functions of a grid (and its geometry): nothing here reads a socket or a queue.
"""
