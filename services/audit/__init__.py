"""`jobstream audit`: check the whole event log against the invariants of DESIGN.md."""
