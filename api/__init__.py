"""The HTTP API: REST resources, health, metrics (and later the console and live streams)."""
