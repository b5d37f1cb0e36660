"""The `metorigin` command line (main.py), one module per command (or group of related commands)."""
