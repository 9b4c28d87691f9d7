"""Everything about envelopes: routing decisions, models, the service, its API and jobs."""
