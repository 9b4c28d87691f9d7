"""Identity checks when a link is opened: link tokens and one-time codes."""
