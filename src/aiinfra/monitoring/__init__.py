"""Watching served models: when to retrain."""
