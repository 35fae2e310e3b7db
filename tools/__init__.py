"""Project tooling run by the Makefile (not part of the installed gateway package)."""
