"""The projector as a process of its own, and the rebuild tool."""
