"""Occupancy history and rollups, the city simulator, forecasts (and, elsewhere, planner exports)."""
