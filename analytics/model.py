"""The occupancy forecaster: one global LightGBM model over every lot, quantile regression for the interval, and
the baselines it is measured against (and falls back to). Pure: series in, forecasts out; no database.

A forecast is made at an origin (the last observed 15-minute bucket) for horizons of 1..672 steps (7 days). Each
(origin, horizon) is one row of features: the horizon, the target's time of day and weekday, the value at the
origin and its recent slope, the same time 1, 2 and 3 weeks before the target (and yesterday, while that is
before the origin), and how the origin compares with a week and a day earlier. Values after the origin are
never read. Three models are fitted: the 10 %, 50 % and 90 % quantiles (the point forecast is the median: the
metric is the mean absolute error; the two others make an 80 % prediction interval).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

STEP = timedelta(minutes=15)
DAY, WEEK = 96, 672
HORIZON_STEPS = WEEK  # 7 days ahead
#: a lot needs this much history for the model; less falls back to a baseline (stated in the forecast's model name)
MIN_MODEL_HISTORY = DAY
QUANTILES = (0.1, 0.5, 0.9)
INTERVAL = 0.8
MODEL_NAME = "lightgbm-global-quantile"
FEATURES = ("horizon_h", "tod", "dow", "last", "slope_1h", "mean_1h", "lag_d1", "lag_w1", "lag_w2", "lag_w3",
            "mean_3w", "origin_vs_w1", "origin_vs_d1", "log_capacity")
#: horizons (steps) sampled for training: dense near, sparse far
TRAIN_HORIZONS = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80, 96, 120, 144, 192, 240, 288, 384, 480,
                           576, 672])
LGB_PARAMS: dict[str, Any] = {"learning_rate": 0.06, "num_leaves": 31, "min_data_in_leaf": 40,
                              "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
                              "verbose": -1, "seed": 17, "deterministic": True}
ROUNDS = 160


def threads_for(rows: int) -> int:
    """LightGBM threads: one below ~200,000 rows (two threads on a small set cost 10x more than one on this
    2-core machine, measured: docs/adr/0018), two above."""
    return 1 if rows < 200_000 else 2


@dataclass(frozen=True)
class Series:
    """One lot's occupancy share per 15-minute bucket from `start` (NaN where unknown), and its capacity."""

    start: datetime
    values: np.ndarray
    capacity: int

    @property
    def end(self) -> datetime:
        """The bucket after the last one."""
        return self.start + STEP * len(self.values)

    def index_of(self, at: datetime) -> int:
        return int((at - self.start) / STEP)


def _quiet(fn: Any, stack: np.ndarray, *args: Any) -> np.ndarray:
    """A nan-aggregate over axis 0; a column with nothing known is NaN (without numpy's empty-slice warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(fn(stack, *args, axis=0), dtype=np.float32)


def _tod_dow(times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slot of the day (0..95) and weekday (0 = Monday) of epoch seconds, in UTC."""
    slots = (times_s // 900).astype(np.int64)
    return slots % DAY, ((slots // DAY) + 3) % 7  # 1970-01-01 was a Thursday


def _take(values: np.ndarray, idx: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """values[idx] where 0 <= idx <= limit (never past the origin), else NaN."""
    ok = (idx >= 0) & (idx <= limit)
    out = np.full(idx.shape, np.nan, dtype=np.float32)
    out[ok] = values[idx[ok]]
    return out


def features(series: Series, origins: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """Feature rows (len(origins) == len(horizons)) for targets origins + horizons, from values up to each origin."""
    v = series.values
    o = origins.astype(np.int64)
    t = o + horizons.astype(np.int64)
    start_s = series.start.timestamp()
    tod, dow = _tod_dow(start_s + t * 900.0)
    last = _take(v, o, o)
    back4 = _take(v, o - 4, o)
    recent = _quiet(np.nanmean, np.stack([_take(v, o - k, o) for k in range(4)])) if len(o) else last
    lag_d1 = _take(v, t - DAY, o)
    lags = [_take(v, t - k * WEEK, o) for k in (1, 2, 3)]
    mean3 = _quiet(np.nanmean, np.stack(lags)) if len(o) else last
    cols = [horizons / 4.0, tod, dow, last, last - back4, recent, lag_d1, *lags, mean3,
            last - _take(v, o - WEEK, o), last - _take(v, o - DAY, o),
            np.full(len(o), math.log1p(series.capacity), dtype=np.float32)]
    return np.column_stack(cols).astype(np.float32)


def _base(x: np.ndarray) -> np.ndarray:
    """What the models learn the difference from: the 3-week same-hour mean, else the value at the origin."""
    mean3, last = x[:, FEATURES.index("mean_3w")], x[:, FEATURES.index("last")]
    return np.where(np.isnan(mean3), last, mean3)


def training_rows(series: Mapping[Any, Series], *, rng: np.random.Generator, origins_per_lot: int = 160,
                  until: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) sampled from every lot: origins at random observed buckets, targets at TRAIN_HORIZONS (known only)."""
    xs, ys = [], []
    for s in series.values():
        n = len(s.values) if until is None else min(len(s.values), max(s.index_of(until), 0))
        seen = np.nonzero(~np.isnan(s.values[:n]))[0]
        if not len(seen) or n - seen[0] < MIN_MODEL_HISTORY + 8:
            continue
        o = rng.integers(seen[0] + MIN_MODEL_HISTORY // 2, n - 1, size=origins_per_lot)
        h = rng.choice(TRAIN_HORIZONS, size=origins_per_lot)
        keep = o + h < n
        o, h = o[keep], h[keep]
        y = s.values[o + h]
        ok = ~np.isnan(y) & ~np.isnan(s.values[o])
        if ok.any():
            xs.append(features(s, o[ok], h[ok]))
            ys.append(y[ok])
    if not xs:
        return np.empty((0, len(FEATURES)), dtype=np.float32), np.empty(0, dtype=np.float32)
    return np.concatenate(xs), np.concatenate(ys)


#: interval calibration groups by horizon (steps): up to 1 hour, up to a day, beyond
HORIZON_GROUPS = np.array([5, 97])


@dataclass
class Model:
    """Three fitted quantile boosters (10 %, 50 %, 90 %), when they were trained, and how much the interval is
    widened (or narrowed) per horizon group to hold the truth 80 % of the time on held-out rows."""

    boosters: list[Any]
    trained_at: datetime
    rows: int
    widen: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def to_bytes(self) -> bytes:
        return json.dumps({"name": MODEL_NAME, "trained_at": self.trained_at.isoformat(), "rows": self.rows,
                           "quantiles": list(QUANTILES), "widen": self.widen,
                           "boosters": [b.model_to_string() for b in self.boosters]}).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> Model:
        import lightgbm as lgb

        data = json.loads(body)
        return cls([lgb.Booster(model_str=s) for s in data["boosters"]],
                   datetime.fromisoformat(data["trained_at"]), int(data["rows"]), list(data.get("widen", [0, 0, 0])))

    def predict(self, x: np.ndarray, *, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point, low, high) in [0, 1] with low <= point <= high."""
        preds = np.stack([b.predict(x, num_threads=threads_for(len(x))) for b in self.boosters]) + _base(x)
        preds = np.sort(preds, axis=0)  # quantile models may cross: keep them ordered
        point, low, high = preds[1], preds[0], preds[2]
        if calibrated:
            widen = np.asarray(self.widen, dtype=np.float64)[np.digitize(x[:, 0] * 4, HORIZON_GROUPS)]
            low, high = low - widen, high + widen
        point = np.clip(point, 0.0, 1.0)
        return point, np.clip(np.minimum(low, point), 0.0, 1.0), np.clip(np.maximum(high, point), 0.0, 1.0)


def train(series: Mapping[Any, Series], *, now: datetime, until: datetime | None = None, seed: int = 17) -> Model | None:
    """Fit the global model on every lot's history (before `until` when given); None when there is too little.

    A fifth of the sampled rows is held out to calibrate the interval (conformalized quantile regression, per
    horizon group): the 10 % and 90 % models alone are fitted on the rows they then describe, so their interval
    is too narrow out of sample (62 % coverage for a stated 80 % in the interval test before this)."""
    import lightgbm as lgb

    lots = max(len(series), 1)
    per_lot = int(min(600, max(160, 400_000 // lots)))
    x, y = training_rows(series, rng=np.random.default_rng(seed), until=until, origins_per_lot=per_lot)
    if len(y) < 500:
        return None
    calibrate = np.random.default_rng(seed + 1).random(len(y)) < 0.2
    boosters = []
    for q in QUANTILES:
        params = {**LGB_PARAMS, "objective": "quantile", "alpha": q, "num_threads": threads_for(len(y))}
        data = lgb.Dataset(x[~calibrate], label=(y - _base(x))[~calibrate], feature_name=list(FEATURES),
                           free_raw_data=False)
        boosters.append(lgb.train(params, data, num_boost_round=ROUNDS))
    model = Model(boosters, now, int((~calibrate).sum()))
    xc, yc = x[calibrate], y[calibrate]
    _, low, high = model.predict(xc, calibrated=False)
    scores = np.maximum(low - yc, yc - high)
    groups = np.digitize(xc[:, 0] * 4, HORIZON_GROUPS)
    for g in range(len(HORIZON_GROUPS) + 1):
        sel = scores[groups == g]
        if len(sel) >= 20:
            level = min(1.0, INTERVAL * (1 + 1 / len(sel)))
            model.widen[g] = float(np.quantile(sel, level))
    return model


# -- baselines -----------------------------------------------------------------------------------------------

BASELINE_WEEKS = "baseline:same-hour-last-weeks"
BASELINE_YESTERDAY = "baseline:same-time-yesterday"
BASELINE_LAST = "baseline:last-value"
BASELINE_CITY = "baseline:city-average"
BASELINE_NONE = "baseline:unknown"


def seasonal_naive(series: Series, o: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Same hour last week."""
    return _take(series.values, o + h - WEEK, o)


def three_week_average(series: Series, o: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The mean of the same hour 1, 2 and 3 weeks before (those known)."""
    return _quiet(np.nanmean, np.stack([_take(series.values, o + h - k * WEEK, o) for k in (1, 2, 3)]))


def last_value(series: Series, o: np.ndarray, h: np.ndarray) -> np.ndarray:
    return _take(series.values, o, o)


def observed_span(series: Series, o: int) -> int:
    """Buckets from the lot's first observation to `o` (its history's length, gaps included)."""
    seen = np.nonzero(~np.isnan(series.values[: o + 1]))[0]
    return int(o - seen[0] + 1) if len(seen) else 0


def baseline(series: Series | None, o: int, h: np.ndarray,
             city: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """The stated fallback for a lot the model cannot forecast: (name, point, low, high).

    With a week of history: the mean of the same hour over the last (up to 3) weeks, the interval spanning those
    weeks widened by 0.1; with a day: the same time yesterday +-0.15; with anything: the last value +-0.25; with
    nothing: the city's average share for that time of the week (10th-90th percentile across lots), or, without a
    city either, 0 within [0, 1]."""
    if series is not None and o >= 0:
        v = series.values
        o_arr = np.full(len(h), o)
        observed = observed_span(series, o)
        if observed >= WEEK:
            lags = np.stack([_take(v, o_arr + h - k * WEEK - ((h - 1) // WEEK) * WEEK, o_arr) for k in (1, 2, 3)])
            point, lo, hi = _quiet(np.nanmean, lags), _quiet(np.nanmin, lags), _quiet(np.nanmax, lags)
            if not np.isnan(point).all():
                return _bounded(BASELINE_WEEKS, point, lo - 0.1, hi + 0.1, fill=float(np.nanmean(v[: o + 1])))
        if observed >= DAY:
            point = _take(v, o_arr + h - DAY - ((h - 1) // DAY) * DAY, o_arr)
            if not np.isnan(point).all():
                return _bounded(BASELINE_YESTERDAY, point, point - 0.15, point + 0.15, fill=float(np.nanmean(v[: o + 1])))
        known = v[: o + 1][~np.isnan(v[: o + 1])]
        if len(known):
            point = np.full(len(h), known[-1], dtype=np.float32)
            return _bounded(BASELINE_LAST, point, point - 0.25, point + 0.25, fill=float(known[-1]))
    if city is not None:
        point, lo, hi = city
        return _bounded(BASELINE_CITY, point, lo, hi, fill=0.0)
    zeros = np.zeros(len(h), dtype=np.float32)
    return BASELINE_NONE, zeros, zeros, np.ones(len(h), dtype=np.float32)


def _bounded(name: str, point: np.ndarray, lo: np.ndarray, hi: np.ndarray,
             fill: float) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    point = np.where(np.isnan(point), fill, point)
    lo = np.where(np.isnan(lo), point - 0.2, lo)
    hi = np.where(np.isnan(hi), point + 0.2, hi)
    point = np.clip(point, 0, 1)
    return name, point.astype(np.float32), np.clip(np.minimum(lo, point), 0, 1).astype(np.float32), \
        np.clip(np.maximum(hi, point), 0, 1).astype(np.float32)


def city_profile(series: Iterable[Series], at: list[datetime]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The city's mean share at each time of the week of `at` over all lots' histories, with the 10th and 90th
    percentile across lots (the forecast of a lot without history)."""
    per_lot = []
    keys = np.array([(int(a.timestamp()) // 900) % WEEK for a in at])
    for s in series:
        slots = (int(s.start.timestamp()) // 900 + np.arange(len(s.values))) % WEEK
        sums = np.bincount(slots, weights=np.nan_to_num(s.values), minlength=WEEK)
        counts = np.bincount(slots, weights=(~np.isnan(s.values)).astype(float), minlength=WEEK)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_lot.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[keys])
    if not per_lot:
        return None
    stack = np.stack(per_lot)
    point = _quiet(np.nanmean, stack)
    lo, hi = _quiet(np.nanpercentile, stack, 10), _quiet(np.nanpercentile, stack, 90)
    if np.isnan(point).all():
        return None
    return point.astype(np.float32), lo.astype(np.float32), hi.astype(np.float32)


# -- forecasts ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Forecast:
    """One lot's forecast: the model (or baseline) that made it, its points and when it is likely full."""

    model: str
    trained_at: datetime | None
    at: list[datetime]
    occupancy: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def points(self) -> list[dict[str, Any]]:
        return [{"at": a.isoformat().replace("+00:00", "Z"), "occupancy": round(float(p), 4),
                 "low": round(float(lo), 4), "high": round(float(hi), 4)}
                for a, p, lo, hi in zip(self.at, self.occupancy, self.low, self.high, strict=True)]


#: a lot is "likely full" from the first step whose point forecast reaches this share
LIKELY_FULL = 0.95


def likely_full_at(at: list[datetime], occupancy: np.ndarray, threshold: float = LIKELY_FULL) -> datetime | None:
    hits = np.nonzero(occupancy >= threshold)[0]
    return at[int(hits[0])] if len(hits) else None


def forecast_lot(series: Series | None, *, model: Model | None, origin_end: datetime, first: datetime, steps: int,
                 city: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Forecast:
    """Forecast `steps` buckets from `first` using what is known before `origin_end` (exclusive)."""
    at = [first + STEP * k for k in range(steps)]
    if series is None or not len(series.values):
        name, p, lo, hi = baseline(None, -1, np.arange(1, steps + 1), city)
        return Forecast(name, None, at, p, lo, hi)
    known_until = min(series.index_of(origin_end), len(series.values)) - 1  # last bucket before origin_end
    observed = series.values[: known_until + 1] if known_until >= 0 else series.values[:0]
    o = int(np.nonzero(~np.isnan(observed))[0][-1]) if (~np.isnan(observed)).any() else -1
    first_idx = series.index_of(first)
    h = np.arange(first_idx - o, first_idx - o + steps) if o >= 0 else np.arange(1, steps + 1)
    if model is not None and observed_span(series, o) >= MIN_MODEL_HISTORY and h.min() >= 1:
        v = np.concatenate([series.values[: o + 1], np.full(int(h.max()), np.nan, dtype=np.float32)])
        padded = Series(series.start, v, series.capacity)
        p, lo, hi = model.predict(features(padded, np.full(steps, o), h))
        return Forecast(MODEL_NAME, model.trained_at, at, p, lo, hi)
    name, p, lo, hi = baseline(series, o, np.maximum(h, 1), city)
    return Forecast(name, None, at, p, lo, hi)


def forecast_many(series: Mapping[Any, Series | None], *, model: Model | None, origin_end: datetime, first: datetime,
                  steps: int, city: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[Any, Forecast]:
    """forecast_lot for many lots, the model's lots in one predict call (per-call overhead dominated otherwise)."""
    at = [first + STEP * k for k in range(steps)]
    out: dict[Any, Forecast] = {}
    batch: list[tuple[Any, np.ndarray]] = []
    for lot, s in series.items():
        if s is None or not len(s.values) or model is None:
            out[lot] = forecast_lot(s, model=model, origin_end=origin_end, first=first, steps=steps, city=city)
            continue
        known_until = min(s.index_of(origin_end), len(s.values)) - 1
        observed = s.values[: known_until + 1] if known_until >= 0 else s.values[:0]
        o = int(np.nonzero(~np.isnan(observed))[0][-1]) if (~np.isnan(observed)).any() else -1
        first_idx = s.index_of(first)
        if o < 0 or observed_span(s, o) < MIN_MODEL_HISTORY or first_idx - o < 1:
            out[lot] = forecast_lot(s, model=model, origin_end=origin_end, first=first, steps=steps, city=city)
            continue
        h = np.arange(first_idx - o, first_idx - o + steps)
        padded = Series(s.start, np.concatenate([s.values[: o + 1], np.full(int(h.max()), np.nan, dtype=np.float32)]),
                        s.capacity)
        batch.append((lot, features(padded, np.full(steps, o), h)))
    if batch and model is not None:
        p, lo, hi = model.predict(np.concatenate([x for _, x in batch]))
        for k, (lot, _) in enumerate(batch):
            sl = slice(k * steps, (k + 1) * steps)
            out[lot] = Forecast(MODEL_NAME, model.trained_at, at, p[sl], lo[sl], hi[sl])
    return out


def aligned(value: datetime) -> datetime:
    """`value` floored to its 15-minute bucket, in UTC."""
    s = int(value.astimezone(UTC).timestamp())
    return datetime.fromtimestamp(s - s % 900, tz=UTC)
