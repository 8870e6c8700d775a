"""Keeps the embedded nats-server's logins in step with the domains and their tokens."""
