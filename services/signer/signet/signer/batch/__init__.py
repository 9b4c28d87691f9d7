"""Batch sealing: the queue, the batch volume and its guard, workers, uploads,
results, the long poll, the CLI's bulk sealer."""
