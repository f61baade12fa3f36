"""On-disk formats: index.json, MDS, JSONL, CSV/TSV/XSV; compression and hashing."""
