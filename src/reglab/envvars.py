"""Names of environment variables that more than one layer of reglab uses (imports nothing)."""

STORAGE_VARIABLE = "REGLAB_STORAGE"
"""A study's database URL: ``reglab worker --storage`` reads it when the option is absent, and
``reglab sweep`` hands its storage to the workers it starts through it (never on a command line,
where anyone on the machine could read a password)."""
