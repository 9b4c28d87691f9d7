"""Organisations, users with their roles, and the API keys integrators call with."""
