"""The SQLite world of the service-level tests, shared by their modules."""

from tests.portal.test_envelope_service import world

__all__ = ["world"]
