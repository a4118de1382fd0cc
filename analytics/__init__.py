"""Occupancy history and rollups, the city simulator, forecasts and planner exports."""
