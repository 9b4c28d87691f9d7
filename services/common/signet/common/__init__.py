"""The shared kernel: settings, API contracts, errors, logging and service clients.

Every component may import this package; it imports no component (an
import-linter contract in pyproject.toml checks that).
"""
