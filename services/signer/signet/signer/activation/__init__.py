"""Signature activation (DESIGN.md "Signature activation"): a person or event key signs
only with a one-time code its holder received at the key's bound contact, for the
exact documents the code was issued for.  `rules` holds the storage-free decisions;
the registry-backed store and the routes build on it."""
