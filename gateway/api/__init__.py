"""The HTTP edge: one router module per surface."""
