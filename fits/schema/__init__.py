"""JSON Schemas shipped with collcost (constants file)."""
