"""Operator test set-up.

helm-sdkpy embeds Helm's Go library, which reads HELM_DRIVER once when it loads:
with the default driver Helm keeps its release record as a protobuf Secret that the
Kubernetes emulator cannot decode, so the memory driver is set before any import.
"""

from __future__ import annotations

import os

os.environ["HELM_DRIVER"] = "memory"
