"""Rolling-origin backtest of the forecaster against three baselines, all computed in the same run."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from analytics import model as m

HORIZONS = {"1h": 4, "day_ahead": m.DAY}
BASELINES = {"seasonal_naive": m.seasonal_naive, "three_week_average": m.three_week_average,
             "last_value": m.last_value}


def backtest(series: Mapping[Any, m.Series], *, test_days: int = 7, every: timedelta = timedelta(hours=2),
             seed: int = 17) -> dict[str, Any]:
    """Train once on everything before the test period's start, then forecast from an origin every `every` of the
    test period; MAE of occupancy share at 1 hour and day-ahead for the model and each baseline on the same targets
    (those whose truth and same-hour-last-week are known), and how often the 80 % interval held the truth."""
    if not series:
        raise ValueError("no history to backtest")
    end = max(s.end for s in series.values())
    cut = m.aligned(end - timedelta(days=test_days))
    started = time.perf_counter()
    model = m.train(series, now=cut, until=cut, seed=seed)
    train_seconds = time.perf_counter() - started
    if model is None:
        raise ValueError(f"too little history before {cut.isoformat()} to train (need at least a day per lot)")
    origins: list[datetime] = []
    at = cut
    while at + m.STEP * m.DAY <= end:
        origins.append(at)
        at += every
    errors: dict[str, dict[str, list[np.ndarray]]] = {h: {k: [] for k in ("model", *BASELINES)} for h in HORIZONS}
    covered: dict[str, list[np.ndarray]] = {h: [] for h in HORIZONS}
    predict_started = time.perf_counter()
    for s in series.values():
        o = np.array([s.index_of(a) - 1 for a in origins])
        o = o[(o >= m.MIN_MODEL_HISTORY) & (o < len(s.values))]
        if not len(o):
            continue
        for name, steps in HORIZONS.items():
            h = np.full(len(o), steps)
            ok = o + h < len(s.values)
            oo, hh = o[ok], h[ok]
            truth = s.values[oo + hh]
            naive = m.seasonal_naive(s, oo, hh)
            keep = ~np.isnan(truth) & ~np.isnan(naive) & ~np.isnan(s.values[oo])
            if not keep.any():
                continue
            oo, hh, truth = oo[keep], hh[keep], truth[keep]
            point, low, high = model.predict(m.features(s, oo, hh))
            errors[name]["model"].append(np.abs(point - truth))
            covered[name].append((truth >= low - 1e-6) & (truth <= high + 1e-6))
            for b, fn in BASELINES.items():
                errors[name][b].append(np.abs(fn(s, oo, hh) - truth))
    predict_seconds = time.perf_counter() - predict_started
    out: dict[str, Any] = {"lots": len(series), "origins": len(origins), "every_minutes": every.total_seconds() / 60,
                           "train_until": cut.isoformat(), "train_rows": model.rows,
                           "train_seconds": round(train_seconds, 2), "predict_seconds": round(predict_seconds, 2),
                           "model": m.MODEL_NAME}
    for name in HORIZONS:
        if not errors[name]["model"]:
            raise ValueError("no target in the test period has both its truth and the same hour a week before")
        maes = {k: round(float(np.mean(np.concatenate(v))), 4) for k, v in errors[name].items()}
        out[name] = {"mae": maes, "targets": int(sum(len(v) for v in errors[name]["model"])),
                     "interval_coverage": round(float(np.mean(np.concatenate(covered[name]))), 3),
                     "interval": m.INTERVAL}
    day, hour = out["day_ahead"]["mae"], out["1h"]["mae"]
    out["targets_met"] = {
        "day_ahead_le_0.85x_seasonal_naive": day["model"] <= 0.85 * day["seasonal_naive"],
        "day_ahead_le_three_week_average": day["model"] <= day["three_week_average"],
        "1h_le_last_value": hour["model"] <= hour["last_value"],
        "1h_le_0.05": hour["model"] <= 0.05,
    }
    return out
