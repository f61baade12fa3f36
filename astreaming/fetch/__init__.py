"""The asyncio fetch scheduler and its loop thread."""
