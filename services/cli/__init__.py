"""The `jobstream` command line: server processes and a client of the REST API."""
