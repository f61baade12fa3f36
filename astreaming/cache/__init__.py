"""Node-local shard cache: paths, locks, publish, budget and eviction."""
