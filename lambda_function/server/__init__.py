"""The HTTP server (Kubernetes, `make serve`): the ASGI front, the connection rules, the process."""
