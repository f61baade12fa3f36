"""The ``astreaming`` command."""
