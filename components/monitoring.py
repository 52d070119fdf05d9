"""Component of the monitoring pipeline: watch the served model, say whether to retrain."""

from kfp.dsl import HTML, Markdown, Metrics, Output


def monitor_model(
    config: str, report: Output[HTML], summary: Output[Markdown], metrics: Output[Metrics]
) -> str:
    """Compare the latest windows of served requests with their version's reference; returns
    why to retrain (the rules that fired), "" when none did. The latest window's figures are
    logged as metrics for the Kubeflow UI."""
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import monitor_serving

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    trigger, figures = monitor_serving(
        config_from_json(config), Path(report.path), Path(summary.path)
    )
    for key, value in figures.items():
        metrics.log_metric(key, value)
    return trigger
