"""Templates: documents, roles (not people), fields per role and the message, saved for
reuse; an envelope is made from one by filling its roles with people."""
