"""The HTTP API and the viewer's server side: ``grids`` routes requests (socket-free), ``web`` serves them (uvicorn)."""
