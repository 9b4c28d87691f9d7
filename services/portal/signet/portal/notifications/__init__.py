"""The portal's outbox: every message with its real state (`signet.common.notify`)."""
