"""The firewatch application: service wiring, the embedded broker, the demo and the CLI."""
