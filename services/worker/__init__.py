"""The worker: registers, heartbeats, pulls its assignments and runs them."""
