"""H3 cells as signed 64-bit integers (PostgreSQL bigint) at the resolutions we index."""

from __future__ import annotations

import h3

RESOLUTIONS = (7, 9)


def cell(lat: float, lng: float, res: int) -> int:
    """The H3 cell containing (lat, lng) at `res`, as an int that fits a bigint."""
    return h3.str_to_int(h3.latlng_to_cell(lat, lng, res))


def cells(lat: float, lng: float) -> dict[int, int]:
    return {res: cell(lat, lng, res) for res in RESOLUTIONS}
