"""Data: the Feast store, point-in-time training sets, validation and drift."""
