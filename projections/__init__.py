"""Read models built from the event log into DuckDB: schema, mappings, projector, queries."""
