"""How statsforecast's per-series models compare with our global LightGBM model on the same history and origins.

statsforecast is not a ParkGrid dependency (docs/adr/0018): run this in a separate virtualenv,

    python3 -m venv /tmp/sf && /tmp/sf/bin/pip install 'statsforecast>=2,<3'
    PYTHONPATH=$PWD /tmp/sf/bin/python -m loadtests.compare_statsforecast --history city.csv

with a CSV from `parkgrid` (lot_id, at, occupied, capacity), and compare with
`parkgrid forecast backtest --history city.csv --every-minutes 1440 --json` (the same daily origins over the last
7 days). Prints MAE of occupancy share at 1 hour and day-ahead for MSTL (daily and weekly seasonality, AutoETS
trend), seasonal naive and the 3-week seasonal window average, and the fitting time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import MSTL, SeasonalNaive, SeasonalWindowAverage

from analytics.csvhistory import read_history
from analytics.model import DAY, STEP, WEEK


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--history", required=True)
    ap.add_argument("--test-days", type=int, default=7)
    args = ap.parse_args()
    with open(args.history, encoding="utf-8", newline="") as stream:
        series = read_history(stream)
    frames = []
    for lot, s in series.items():
        ds = pd.date_range(s.start, periods=len(s.values), freq="15min").tz_convert(None)
        frames.append(pd.DataFrame({"unique_id": lot, "ds": ds, "y": np.nan_to_num(s.values.astype(float))}))
    df = pd.concat(frames, ignore_index=True)
    models = [MSTL(season_length=[DAY, WEEK], alias="mstl"), SeasonalNaive(season_length=WEEK, alias="seasonal_naive"),
              SeasonalWindowAverage(season_length=WEEK, window_size=3, alias="three_week_average")]
    sf = StatsForecast(models=models, freq="15min", n_jobs=1)
    started = time.perf_counter()
    cv = sf.cross_validation(df=df, h=DAY, step_size=DAY, n_windows=args.test_days)
    seconds = time.perf_counter() - started
    steps = ((cv["ds"] - cv["cutoff"]) / pd.Timedelta(STEP)).round().astype(int)
    out = {"lots": len(series), "origins": args.test_days, "seconds": round(seconds, 1)}
    for name, h in (("1h", 4), ("day_ahead", DAY)):
        rows = cv[steps == h]
        out[name] = {m: round(float(np.mean(np.abs(rows[m].clip(0, 1) - rows["y"]))), 4)
                     for m in ("mstl", "seasonal_naive", "three_week_average")}
    print(out)


if __name__ == "__main__":
    main()
