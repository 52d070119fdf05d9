"""Evaluation against the champion, the MLflow registry, promotion and its webhooks."""
