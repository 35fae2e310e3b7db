"""Cost, budgets and rate limits."""
