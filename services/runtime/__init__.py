"""Runtime pieces every service shares: settings, NATS connection, embedded server, lease."""
