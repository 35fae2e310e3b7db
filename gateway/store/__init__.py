"""Records: SQLAlchemy tables, engines, migrations and the batched request log."""
