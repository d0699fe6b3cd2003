"""The edges: OCPP gateway and translators, PostgreSQL wiring, the command writer, the CLI."""
