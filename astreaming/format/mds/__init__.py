"""astreaming.format.mds."""
