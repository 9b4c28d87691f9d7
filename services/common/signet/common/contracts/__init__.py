"""API contracts: the pydantic models that cross service boundaries.

Request/response models live here (not in the services) so that clients —
the portal, storage, the CLI, integrators' SDKs — use exactly the shapes the
services validate.
"""
