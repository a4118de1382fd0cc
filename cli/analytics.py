"""`parkgrid history`, `parkgrid simulate` and `parkgrid forecast`: occupancy history, a simulated past, forecasts."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

import typer

from cli.common import emit, run_with_context
from core.context import AppContext
from core.logging import configure_logging

history_app = typer.Typer(no_args_is_help=True)


def _utc(value: str, option: str) -> datetime:
    """An ISO 8601 time with an offset (or Z), in UTC; exits 2 naming the option otherwise."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        typer.echo(f"error: {option} must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z (got {value!r})", err=True)
        raise typer.Exit(2) from None
    if parsed.tzinfo is None:
        typer.echo(f"error: {option} must carry a timezone offset, e.g. Z (got {value!r})", err=True)
        raise typer.Exit(2)
    return parsed.astimezone(UTC)


@history_app.command("backfill")
def backfill(start: str = typer.Option(..., "--from", help="ISO 8601 time with offset"),
             end: str = typer.Option(..., "--to", help="ISO 8601 time with offset (buckets after now are skipped)"),
             lot: list[uuid.UUID] = typer.Option(None, "--lot", help="only these lots (repeatable)"),
             json: bool = typer.Option(False, "--json")) -> None:
    """(Re)compute 15-minute occupancy rows and hourly rollups for [--from, --to); safe to run again."""
    from analytics.history import backfill as run_backfill

    t0, t1 = _utc(start, "--from"), _utc(end, "--to")
    if t1 <= t0:
        typer.echo("error: --to must be after --from", err=True)
        raise typer.Exit(2)

    async def job(ctx: AppContext) -> dict[str, object]:
        run = await run_backfill(engine=ctx.engine, t0=t0, t1=t1, now=ctx.clock.now(), lot_ids=list(lot) if lot else None)
        return run.as_json()

    emit(run_with_context(job), as_json=json)


@history_app.command("prune")
def prune(json: bool = typer.Option(False, "--json")) -> None:
    """Retention: delete raw sensor events older than 7 days and 15-minute rows older than 90 days."""
    from analytics.history import prune as run_prune

    async def job(ctx: AppContext) -> dict[str, int]:
        return (await run_prune(engine=ctx.engine, now=ctx.clock.now())).as_json()

    emit(run_with_context(job), as_json=json)


def register(app: typer.Typer) -> None:
    app.add_typer(history_app, name="history", help="Occupancy history: backfill and retention.")
    register_forecast(app)

    @app.command()
    def simulate(lots: int = typer.Option(30, min=1, max=5_000), days: int = typer.Option(14, min=1, max=120),
                 seed: int = typer.Option(42), end: str = typer.Option(None, "--end",
                                                                       help="end of the past (default: now)"),
                 domain_hours: float = typer.Option(1.0, "--domain-hours", min=0.0, max=24.0 * 120,
                                                    help="the last hours driven through the domain functions"),
                 json: bool = typer.Option(False, "--json")) -> None:
        """Give a city a believable past: seed `--lots` lots and simulate `--days` days before `--end`."""
        from analytics.simulate import simulate as run_simulate

        until = _utc(end, "--end") if end else None
        configure_logging("error")  # thousands of gate decisions and overstay warnings: the summary counts them

        async def job(ctx: AppContext) -> dict[str, object]:
            return await run_simulate(ctx, lots=lots, days=days, seed=seed, end=until or ctx.clock.now(),
                                      domain_hours=domain_hours,
                                      progress=None if json else (lambda m: print(m, file=sys.stderr)))

        emit(run_with_context(job), as_json=json)


forecast_app = typer.Typer(no_args_is_help=True)


@forecast_app.command("train")
def forecast_train(lot: list[uuid.UUID] = typer.Option(None, "--lot", help="only these lots (repeatable)"),
                   json: bool = typer.Option(False, "--json")) -> None:
    """Fit the global model on the stored history and write every lot's forecast (7 days, 15-minute steps)."""
    from analytics.forecast import train

    async def job(ctx: AppContext) -> dict[str, object]:
        return (await train(engine=ctx.engine, now=ctx.clock.now(), lot_ids=list(lot) if lot else None)).as_json()

    emit(run_with_context(job), as_json=json)


def _history_or_exit(path: str) -> dict:
    from analytics.csvhistory import HistoryError, read_history

    try:
        with open(path, encoding="utf-8", newline="") as stream:
            return read_history(stream)
    except OSError as exc:
        typer.echo(f"error: --history: {exc.strerror}: {path}", err=True)
        raise typer.Exit(2) from None
    except HistoryError as exc:
        typer.echo(f"error: {path}: {exc}", err=True)
        raise typer.Exit(2) from None


@forecast_app.command("predict")
def forecast_predict(history: str = typer.Option(..., "--history", help="CSV: lot_id, at, occupied, capacity (UTC)"),
                     at: str = typer.Option(..., "--at", help="first forecast time (ISO 8601 with offset)"),
                     hours: float = typer.Option(24.0, "--hours", min=0.25, max=168.0),
                     json: bool = typer.Option(False, "--json")) -> None:
    """Forecast each lot of a CSV from its rows alone (no database): {lot_id: [{at, occupancy, low, high}]}."""
    import json as jsonlib

    from analytics import model as m

    series = _history_or_exit(history)
    first = m.aligned(_utc(at, "--at"))
    if first != _utc(at, "--at"):
        typer.echo(f"note: --at {at} starts at its 15-minute bucket {first.isoformat()}", err=True)
    # only rows before --at are used: nothing the forecast could not have known
    known = {lot: s for lot, s in series.items() if s.start < first}
    fitted = m.train(known, now=first, until=first)
    steps = max(1, round(hours * 4))
    city = m.city_profile(known.values(), [first + m.STEP * k for k in range(steps)])
    out = {}
    made = m.forecast_many({lot: known.get(lot) for lot in series}, model=fitted, origin_end=first, first=first,
                           steps=steps, city=city)
    for lot, f in made.items():
        if f.model != m.MODEL_NAME:
            why = "no model (too little history across the CSV)" if fitted is None else \
                f"less than {m.MIN_MODEL_HISTORY // 4} hours of history before --at"
            typer.echo(f"note: lot {lot}: {why}; forecast by {f.model}", err=True)
        out[lot] = f.points()
    print(jsonlib.dumps(out) if json else jsonlib.dumps(out, indent=1))


@forecast_app.command("backtest")
def forecast_backtest(history: str = typer.Option(None, "--history", help="CSV (default: the database's history)"),
                      days: int = typer.Option(56, "--days", min=9, max=400, help="history read from the database"),
                      test_days: int = typer.Option(7, "--test-days", min=1, max=60),
                      every_minutes: int = typer.Option(120, "--every-minutes", min=15, max=1440,
                                                        help="time between forecast origins"),
                      json: bool = typer.Option(False, "--json")) -> None:
    """Rolling-origin backtest: MAE at 1 h and day-ahead for the model and three baselines, in one run."""
    from datetime import timedelta

    from analytics.backtest import backtest

    if history:
        series = _history_or_exit(history)
    else:
        from analytics.forecast import load_series

        async def job(ctx: AppContext) -> dict:
            now = ctx.clock.now()
            return await load_series(ctx.engine, t0=now - timedelta(days=days), t1=now)

        series = run_with_context(job)
    try:
        result = backtest(series, test_days=test_days, every=timedelta(minutes=every_minutes))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    emit(result, as_json=json)


def register_forecast(app: typer.Typer) -> None:
    app.add_typer(forecast_app, name="forecast", help="Occupancy forecasts: train, predict from a CSV, backtest.")
