"""The portal's jobs table: background work enqueued in the caller's transaction and run
by any replica (`signet.portal.jobs.queue`)."""
