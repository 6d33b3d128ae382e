"""The database: schema, engine, migrations and the queue operations (the only SQL)."""
