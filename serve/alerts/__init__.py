"""Site alerts: the sites file, ALERT/CLEAR/UNKNOWN states derived from stored grids, and the webhook sending them."""
