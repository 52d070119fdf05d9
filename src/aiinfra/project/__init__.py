"""The project: its configuration, the schema built from it, entry points."""
