"""The portal: users, envelopes, routing, identity checks, notifications, REST API."""
