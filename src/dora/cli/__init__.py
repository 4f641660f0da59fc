"""The `dora` command line."""
