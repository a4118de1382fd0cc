"""`parkgrid serve|worker|beat`: the long-running processes."""

from __future__ import annotations

from typing import Any

import typer
from celery.schedules import crontab

from cli.common import settings_or_exit
from core.celery_app import create_celery

# Task modules and periodic jobs; each domain package owns its tasks module.
TASK_MODULES: list[str] = ["booking.tasks", "core.tasks", "controllers.tasks", "controllers.tasks_sensors",
                           "analytics.exports.tasks", "analytics.tasks"]
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "expire-holds": {"task": "booking.expire_holds", "schedule": 15.0},
    "mark-no-shows": {"task": "booking.mark_no_shows", "schedule": 60.0},
    "settle-payments": {"task": "booking.settle_payments", "schedule": 60.0},
    "release-early-departures": {"task": "booking.release_early_departures", "schedule": 60.0},
    "reconcile-if-reset": {"task": "booking.reconcile_if_reset", "schedule": 10.0},
    "reconcile-active": {"task": "booking.reconcile_active", "schedule": 300.0},
    "purge-plates-daily": {"task": "parkgrid.privacy.purge_plates", "schedule": 86_400.0},
    "extend-walk-ins": {"task": "controllers.extend_walk_ins", "schedule": 60.0},
    "mark-stale-sensors": {"task": "controllers.mark_stale_sensors", "schedule": 30.0},
    "occupancy-snapshots": {"task": "controllers.occupancy_snapshots", "schedule": 300.0},
    "prune-sensor-event-ids": {"task": "controllers.prune_sensor_event_ids", "schedule": 3_600.0},
    "expire-idempotency-keys": {"task": "booking.expire_idempotency_keys", "schedule": 600.0},
    "purge-exports": {"task": "analytics.exports.purge", "schedule": 3_600.0},
    "renew-passes": {"task": "passes.renew_due", "schedule": 3_600.0},
    "occupancy-history": {"task": "analytics.history_refresh", "schedule": 900.0},
    "occupancy-history-retention": {"task": "analytics.history_prune", "schedule": 86_400.0},
    "forecast-train-nightly": {"task": "analytics.forecast_train", "schedule": crontab(hour=10, minute=30)},  # 02:30 PT
    "forecast-refresh": {"task": "analytics.forecast_refresh", "schedule": 900.0},
}
# open data: partners' webhooks (geo/webhooks.py)
TASK_MODULES.append("geo.tasks")
BEAT_SCHEDULE["partner-webhooks"] = {"task": "geo.partner_webhooks", "schedule": 10.0}


def celery_app() -> Any:
    return create_celery(settings_or_exit(), task_modules=TASK_MODULES, beat_schedule=BEAT_SCHEDULE)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000),
              workers: int = typer.Option(1, min=1), reload: bool = typer.Option(False)) -> None:
        """Run the HTTP API with uvicorn."""
        import uvicorn

        from cli.serving import APP_CONFIG, reuse_port_available, serve_reuse_port

        settings_or_exit()  # fail fast with one clear line before forking workers
        if workers > 1 and not reload and reuse_port_available():
            serve_reuse_port(host=host, port=port, workers=workers)  # connections spread evenly (cli/serving.py)
            return
        uvicorn.run(**APP_CONFIG, host=host, port=port, workers=workers, reload=reload)

    @app.command()
    def worker(concurrency: int = typer.Option(2, min=1), loglevel: str = typer.Option("info")) -> None:
        """Run a Celery worker on the configured broker."""
        celery = celery_app()
        celery.worker_main(["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
                            "-Q", celery.conf.task_default_queue, "--without-gossip", "--without-mingle"])

    @app.command()
    def beat(loglevel: str = typer.Option("info")) -> None:
        """Run Celery beat: the periodic sweepers and reconcilers."""
        celery = celery_app()
        celery.start(["beat", f"--loglevel={loglevel}", "--schedule=/tmp/parkgrid-beat-schedule"])
