"""The forecaster: a known pattern is recovered, its 80 % interval holds the truth about 80 % of the time, a lot
without history gets a stated baseline, and a bad CSV is refused naming its row and column."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from analytics import model as m
from analytics.backtest import backtest
from analytics.csvhistory import HistoryError, history_csv, read_history
from cli.app import app

START = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday


def pattern(n: int, *, lot: int) -> np.ndarray:
    """Busy weekday afternoons, quiet nights and weekends; lots differ in level."""
    k = np.arange(n)
    tod, dow = k % 96, (k // 96) % 7
    day = np.clip(np.sin(np.pi * (tod - 28) / 48), 0, None)  # 07:00-19:00
    weekday = np.where(dow < 5, 1.0, 0.45)
    return (0.05 + (0.55 + 0.08 * lot) * day * weekday).astype(np.float32)


def city(lots: int = 6, weeks: int = 5, noise: float = 0.04, seed: int = 1) -> dict[int, m.Series]:
    rng = np.random.default_rng(seed)
    n = weeks * m.WEEK
    return {i: m.Series(START, np.clip(pattern(n, lot=i) + rng.normal(0, noise, n), 0, 1).astype(np.float32), 100)
            for i in range(lots)}


def test_a_known_weekly_pattern_is_recovered() -> None:
    series = city()
    fitted = m.train(series, now=START)
    assert fitted is not None
    end = series[0].end
    for lot in (0, 3):
        f = m.forecast_lot(series[lot], model=fitted, origin_end=end, first=end, steps=m.DAY * 2)
        truth = pattern(len(series[lot].values) + m.DAY * 2, lot=lot)[-m.DAY * 2:]
        assert f.model == m.MODEL_NAME
        assert float(np.mean(np.abs(f.occupancy - truth))) < 0.04  # the noise alone is 0.04 sd
        assert np.all(f.low <= f.occupancy) and np.all(f.occupancy <= f.high)


def test_the_80_percent_interval_holds_the_truth_about_80_percent_of_the_time() -> None:
    series = city(lots=8, weeks=6, noise=0.06, seed=2)
    result = backtest(series, test_days=7)
    for horizon in ("1h", "day_ahead"):
        assert 0.7 <= result[horizon]["interval_coverage"] <= 0.9, result[horizon]
    # and the model beats the last value an hour ahead and is close to the noise floor a day ahead
    assert result["1h"]["mae"]["model"] < result["1h"]["mae"]["last_value"]
    assert result["day_ahead"]["mae"]["model"] < 0.06


def test_without_history_a_stated_baseline_answers() -> None:
    at = START + timedelta(days=40)
    nothing = m.forecast_lot(None, model=None, origin_end=at, first=at, steps=8)
    assert nothing.model == m.BASELINE_NONE
    assert set(nothing.occupancy) == {0.0} and set(nothing.high) == {1.0}
    profile = m.city_profile(city().values(), [START + m.STEP * k for k in range(8)])
    from_city = m.forecast_lot(None, model=None, origin_end=at, first=START, steps=8, city=profile)
    assert from_city.model == m.BASELINE_CITY and np.all(from_city.low <= from_city.high)
    short = m.Series(START, np.full(10, 0.4, dtype=np.float32), 50)  # 2.5 hours: too short for the model
    fitted = m.train(city(), now=START)
    f = m.forecast_lot(short, model=fitted, origin_end=short.end, first=short.end, steps=4)
    assert f.model == m.BASELINE_LAST and np.allclose(f.occupancy, 0.4)
    # a lot that opened two hours ago, read from a 3-week window: its length is what it observed, not the window's
    late = np.full(3 * m.WEEK, np.nan, dtype=np.float32)
    late[-8:] = 0.25
    opened = m.Series(START, late, 50)
    f = m.forecast_lot(opened, model=fitted, origin_end=opened.end, first=opened.end, steps=m.WEEK)
    assert f.model == m.BASELINE_LAST and np.allclose(f.occupancy, 0.25)
    week = city(lots=1, weeks=2)[0]  # two weeks without a model: the same hour of the last weeks
    g = m.forecast_lot(week, model=None, origin_end=week.end, first=week.end, steps=4)
    assert g.model == m.BASELINE_WEEKS


def _csv(*rows: str, header: str = "lot_id,at,occupied,capacity") -> io.StringIO:
    return io.StringIO("\n".join((header, *rows)) + "\n")


@pytest.mark.parametrize(("rows", "header", "row", "column", "words"), [
    (["a,2030-01-07T00:00:00Z,1,10"], "lot_id,at,occupied", 1, "capacity", "missing column"),
    (["a,2030-01-07T00:00:00Z,11,10"], None, 2, "occupied", "above capacity"),
    (["a,2030-01-07T00:00:00Z,0,0"], None, 2, "capacity", "at least 1"),
    (["a,2030-01-07T00:00:00Z,1,10", "a,2030-01-07T00:15:00Z,1,10", "a,2030-01-07T00:00:00+00:00,2,10"], None, 4,
     "at", "duplicate timestamp"),
    (["a,2030-01-07T01:00:00+01:00,1,10"], None, 2, "at", "not UTC"),
    (["a,2030-01-07T01:00:00,1,10"], None, 2, "at", "no timezone"),
    (["a,2030-01-07T01:07:00Z,1,10"], None, 2, "at", "15-minute"),
    (["a,2030-01-07T01:00:00Z,x,10"], None, 2, "occupied", "not a number"),
])
def test_a_bad_csv_is_refused_naming_row_and_column(rows: list[str], header: str | None, row: int, column: str,
                                                     words: str) -> None:
    with pytest.raises(HistoryError) as caught:
        read_history(_csv(*rows, **({"header": header} if header else {})))
    assert (caught.value.row, caught.value.column) == (row, column)
    assert words in str(caught.value) and f"row {row}" in str(caught.value)


def test_predict_from_a_csv_alone_and_its_errors_on_the_command_line(tmp_path) -> None:
    series = city(lots=3, weeks=3)
    good = tmp_path / "history.csv"
    good.write_text(history_csv({f"lot-{k}": s for k, s in series.items()}) +
                    "tiny,2030-01-20T10:00:00Z,3,10\n")  # one row: a baseline, said so
    at = (series[0].end).isoformat().replace("+00:00", "Z")
    runner = CliRunner()
    out = runner.invoke(app, ["forecast", "predict", "--history", str(good), "--at", at, "--hours", "2", "--json"])
    assert out.exit_code == 0, out.output
    import json

    body = json.loads(out.stdout)
    assert set(body) == {"lot-0", "lot-1", "lot-2", "tiny"}
    assert len(body["lot-0"]) == 8 and body["lot-0"][0]["at"] == at
    assert all(0 <= p["low"] <= p["occupancy"] <= p["high"] <= 1 for p in body["lot-1"])
    assert "lot tiny" in out.stderr and m.BASELINE_LAST in out.stderr
    backtest_out = runner.invoke(app, ["forecast", "backtest", "--history", str(good), "--test-days", "3", "--json"])
    assert backtest_out.exit_code == 0, backtest_out.output
    result = json.loads(backtest_out.stdout)
    assert {"seasonal_naive", "three_week_average", "last_value", "model"} == set(result["day_ahead"]["mae"])
    bad = tmp_path / "bad.csv"
    bad.write_text("lot_id,at,occupied,capacity\na,2030-01-07T00:00:00Z,12,10\n")
    refused = runner.invoke(app, ["forecast", "predict", "--history", str(bad), "--at", at, "--hours", "2", "--json"])
    assert refused.exit_code == 2 and "row 2, column occupied" in refused.stderr


def test_forecasting_many_lots_at_once_equals_one_by_one() -> None:
    series = city(lots=4, weeks=3)
    fitted = m.train(series, now=START)
    end = series[0].end
    short = m.Series(START, np.full(10, 0.4, dtype=np.float32), 50)
    lots = {**series, "short": short, "none": None}
    many = m.forecast_many(lots, model=fitted, origin_end=end, first=end, steps=96)
    for lot, s in lots.items():
        one = m.forecast_lot(s, model=fitted, origin_end=end, first=end, steps=96)
        assert many[lot].model == one.model
        assert np.allclose(many[lot].occupancy, one.occupancy) and np.allclose(many[lot].high, one.high)
