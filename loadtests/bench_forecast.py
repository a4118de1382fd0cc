"""Nightly training cost at city scale: fit the global model on N lots x D days of 15-minute history, then
forecast every lot 7 days ahead (the 15-minute refresh), beside the seasonal-naive baseline of the same lots
computed in the same run.

    python -m loadtests.bench_forecast [--lots 5000 --days 90]

The series are synthetic, shaped like the simulator's profiles (commuter, shopping, nightlife, mixed; weekday
and weekend; noise and a few evening spikes): simulating 5,000 lots x 90 days through the database is hours of
work, and the model's cost does not depend on where the numbers came from. Not measured here: reading that
history from PostgreSQL (analytics.forecast.load_series) and writing the forecasts back (COPY).
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime

import numpy as np

from analytics import model as m


def city(lots: int, days: int, seed: int) -> dict[int, m.Series]:
    rng = np.random.default_rng(seed)
    n = days * m.DAY
    k = np.arange(n)
    hour = (k % m.DAY) / 4.0
    dow = (k // m.DAY + 3) % 7  # series start on a Thursday
    weekday = dow < 5

    def bump(centre: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((hour - centre) / width) ** 2)

    shapes = {
        "commuter": np.where(weekday, np.clip((hour - 7) / 2, 0, 1) * np.clip((18.5 - hour) / 2, 0, 1), 0.15 * bump(13, 3)),
        "shopping": bump(14, 3) * np.where(dow == 5, 1.2, 0.85),
        "nightlife": bump(21.5, 2) * np.where((dow == 4) | (dow == 5), 1.1, 0.5),
    }
    shapes["mixed"] = 0.5 * shapes["commuter"] + 0.5 * shapes["shopping"]
    names = list(shapes)
    events = rng.random(days) < 1 / 7
    spike = np.repeat(events, m.DAY) * bump(19, 1.2)
    out = {}
    for lot in range(lots):
        base = shapes[names[rng.integers(len(names))]] * rng.uniform(0.5, 0.95)
        level = 0.03 + base + spike * rng.uniform(0, 0.3) * (rng.random() < 0.3)
        noisy = level * np.exp(rng.normal(0, 0.06, days)).repeat(m.DAY) + rng.normal(0, 0.03, n)
        out[lot] = m.Series(datetime(2030, 1, 3, tzinfo=UTC), np.clip(noisy, 0, 1).astype(np.float32),
                            int(rng.integers(20, 2000)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lots", type=int, default=5000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    started = time.perf_counter()
    series = city(args.lots, args.days, args.seed)
    print(f"{args.lots} lots x {args.days} days of 15-minute history generated in {time.perf_counter() - started:.1f} s")
    end = next(iter(series.values())).end
    horizons = np.arange(1, m.HORIZON_STEPS + 1)

    t0 = time.perf_counter()
    for s in series.values():
        m.seasonal_naive(s, np.full(len(horizons), len(s.values) - 1), horizons)
    naive = time.perf_counter() - t0

    t0, cpu0 = time.perf_counter(), time.process_time()
    fitted = m.train(series, now=end)
    train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert fitted is not None
    timings = {}
    for label, steps in (("7 days (nightly)", m.HORIZON_STEPS), ("2 days (every 15 min)", 2 * m.DAY)):
        t0, cpu0 = time.perf_counter(), time.process_time()
        made = m.forecast_many(series, model=fitted, origin_end=end, first=end, steps=steps)
        assert all(f.model == m.MODEL_NAME for f in made.values())
        timings[label] = (time.perf_counter() - t0, time.process_time() - cpu0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"baseline (seasonal naive, 7 days x {args.lots} lots): {naive:.2f} s")
    print(f"train (3 quantile models, {fitted.rows} rows): {train_wall:.1f} s wall, {train_cpu:.1f} s CPU")
    for label, (wall, cpu) in timings.items():
        print(f"forecast {label} x {args.lots} lots: {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"peak memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
