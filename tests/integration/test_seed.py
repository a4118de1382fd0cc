from sqlalchemy import text

from core.context import AppContext
from geo.h3cells import cell
from geo.seed import plan_city, seed_city


def test_same_seed_same_city_and_other_seed_other_city() -> None:
    a, b, c = plan_city(lots=50, seed=7), plan_city(lots=50, seed=7), plan_city(lots=50, seed=8)
    assert a == b
    assert [p.id for p in a] != [p.id for p in c]
    assert all(20 <= p.capacity <= 2000 for p in a)
    assert any(len(p.levels) > 1 for p in plan_city(lots=200, seed=1))


async def test_seeded_rows_match_the_plan(ctx: AppContext) -> None:
    plans = plan_city(lots=12, seed=3)
    totals = await seed_city(ctx.engine, plans, batch=5)
    assert totals["lots"] == 12 and totals["spots"] == sum(p.capacity for p in plans)
    async with ctx.engine.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(text(
            "SELECT l.id, l.name, l.capacity, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,"
            " l.h3_r9, (SELECT count(*) FROM spots s WHERE s.lot_id = l.id) AS n_spots,"
            " (SELECT count(*) FROM rate_cards r WHERE r.lot_id = l.id) AS n_rates FROM lots l"))).all()}
    for plan in plans:
        row = rows[plan.id]
        assert (row.name, row.capacity, row.n_spots, row.n_rates) == (plan.name, plan.capacity, plan.capacity, 1)
        assert abs(row.lat - plan.lat) < 1e-9 and abs(row.lng - plan.lng) < 1e-9
        assert row.h3_r9 == cell(plan.lat, plan.lng, 9)
