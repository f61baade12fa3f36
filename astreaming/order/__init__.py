"""Sample order: world, partitioning, shuffles, sampling and mixing, batching. Pure numpy, no I/O."""
