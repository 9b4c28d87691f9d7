"""The signer service: internal CA, RFC 3161 TSA, OCSP/CRL and PAdES signing with HSM keys.

Layers, each with one job: `keys` (an HSM key as a signing primitive),
`x509` (certificates and CRLs signed in the HSM), `ca` (profiles, issuance,
revocation), `ocsp`, `tsa`, `pades` (pyHanko orchestration), `validation`;
`api` only translates HTTP to these.
"""
