"""Async storage backends behind one interface (local, gs, s3, oci, azure, http)."""
