"""jobstream's processes: api, dispatcher, worker, projector runner, cli."""
