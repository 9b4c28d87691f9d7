"""One `signet up` for the end-to-end hostile tests: three real service processes.

Smaller document limits than the defaults (stated here, and in
docs/admin/hostile-input.md), so that a body "near the limit" is a few tens of MB on
a shared 2-core machine; each bound in the tests is stated against these limits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.appliance import Appliance, running_appliance

#: The signer's max_document_bytes here (default 256 MiB).
SIGNER_DOCUMENT_LIMIT = 32 * 1024 * 1024
#: Storage's max_object_bytes here (default 1 GiB).
STORAGE_OBJECT_LIMIT = 128 * 1024 * 1024
#: The portal's max_document_bytes here (default 50 MiB), with its default 10 documents.
PORTAL_DOCUMENT_LIMIT = 16 * 1024 * 1024


@pytest.fixture(scope="session")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    env = {
        "SIGNET_SIGNER_MAX_DOCUMENT_BYTES": str(SIGNER_DOCUMENT_LIMIT),
        "SIGNET_STORAGE_MAX_OBJECT_BYTES": str(STORAGE_OBJECT_LIMIT),
        "SIGNET_PORTAL_MAX_DOCUMENT_BYTES": str(PORTAL_DOCUMENT_LIMIT),
    }
    with running_appliance(tmp_path_factory.mktemp("hostile") / "home", **env) as running:
        yield running
