"""Occupancy and session exports for city planners (CDS Metrics CSV, GeoJSON, GeoParquet 1.1), with small places
suppressed and no plate, person or internal id in any file. See docs/features/exports.md and docs/adr/0019."""
