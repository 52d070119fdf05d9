"""``aiinfra shadow-report``: how the shadowed challenger did on live requests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from aiinfra.project.config import PlatformConfig


def register(app: typer.Typer, config: Callable[[], PlatformConfig]) -> None:
    @app.command("shadow-report")
    def shadow_report(
        days: float = typer.Option(7, min=0, help="how far back to read the shadow log"),
    ) -> None:
        """Challenger against champion on the live requests it shadowed: requests, agreement,
        difference, latency of each (serving.shadow turns shadowing on).

        Example: aiinfra shadow-report --days 1
        """
        from aiinfra.monitoring import shadow_report as report

        cfg = config()
        since = datetime.now(UTC) - timedelta(days=days)
        summaries = report.summarize(cfg.shadow_log_dir, since)
        if not summaries:
            typer.secho(
                f"no shadow traffic logged in {cfg.shadow_log_dir} in the last {days:g} days "
                "(serve with serving.shadow on: AIINFRA_SERVING__SHADOW=true aiinfra serve)",
                err=True,
            )
            raise typer.Exit(1)
        for version in sorted(summaries, key=int):
            for line in summaries[version].lines():
                typer.echo(line)
