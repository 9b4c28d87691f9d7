"""The portal's HTTP edge: routes that translate HTTP to the domain services and nothing
more, who may call them (`access`), and what every route shares (`deps`).

Above every domain package (envelopes, identity, accounts, notifications, evidence),
which know nothing of HTTP: so the import graph stays one-way.
"""
