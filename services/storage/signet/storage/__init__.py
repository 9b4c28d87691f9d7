"""The storage service: the retained vault, the evidence ledger and evidence packages.

Layers: `vault` (the promises) with `fs_vault` and `s3_vault`; `merkle` (RFC 9162)
and `ledger` (the log in the vault); `signer_client` (tree heads signed and
timestamped by the signer over HTTP); `evidence` (packages and their offline
verification); `service` wires them from `config`; `app` and `api` serve them.
"""
