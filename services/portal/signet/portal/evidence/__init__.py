"""Every step of an envelope as a ledger event, recorded in the step's own transaction."""
