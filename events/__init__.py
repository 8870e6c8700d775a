"""The contract between jobstream services: event types, subjects, codec, streams and store."""
