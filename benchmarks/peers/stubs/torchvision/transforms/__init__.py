"""Only ``functional.to_tensor`` is provided."""
