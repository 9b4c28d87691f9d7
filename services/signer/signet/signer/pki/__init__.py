"""The signer's PKI: the HSM keys, the internal CA, X.509 building, OCSP and the
TSA."""
