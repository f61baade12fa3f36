"""The engine behind ``StreamingDataset``: where order, fetch, cache, storage and format meet."""
