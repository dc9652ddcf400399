"""Embedded local AWS for demos and integration tests."""
