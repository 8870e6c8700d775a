"""The REST API: commands become events, queries read the projection."""
