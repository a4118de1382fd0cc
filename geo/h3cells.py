"""H3 cells as signed 64-bit integers (PostgreSQL bigint) at the resolutions we index, and covering rings."""

from __future__ import annotations

import math
from functools import lru_cache

import h3

RESOLUTIONS = (7, 9)


def cell(lat: float, lng: float, res: int) -> int:
    """The H3 cell containing (lat, lng) at `res`, as an int that fits a bigint."""
    return h3.str_to_int(h3.latlng_to_cell(lat, lng, res))


def cells(lat: float, lng: float) -> dict[int, int]:
    return {res: cell(lat, lng, res) for res in RESOLUTIONS}


@lru_cache(maxsize=8192)
def ring_cells(origin: str, radius_m: float) -> tuple[int, ...]:
    """Cells (as ints) whose union covers every point within `radius_m` of any point of cell `origin`.

    In a hexagonal grid two cells k steps apart have centres at least 1.5·k·edge apart; the query point
    and a lot each lie within one edge of their cell's centre, so k = ceil((r + 2·edge) / (1.5·edge)).
    The local edge is measured at the origin cell and shrunk by 10% against grid distortion. Cached: it
    depends on the cell and radius only (a 1 km ring at r9 is ~130 cells and costs more to build than the
    SQL that uses it).
    """
    edges = [h3.edge_length(e, unit="m") for e in h3.origin_to_directed_edges(origin)]
    short, long_ = min(edges) * 0.9, max(edges) * 1.1
    k = math.ceil((radius_m + 2 * long_) / (1.5 * short))
    return tuple(h3.str_to_int(c) for c in h3.grid_disk(origin, k))
