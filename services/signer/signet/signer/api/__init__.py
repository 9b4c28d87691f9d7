"""HTTP routes of the signer: they translate HTTP to the signer's layers and nothing more."""
