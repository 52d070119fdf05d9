"""Components of the data stage: point-in-time training set, then validation."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Output


def build_training_set(config: str, training_set: Output[Dataset]) -> str:
    """Join the label table with the Feast feature service as of each row's time; returns the
    data hash."""
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.project.feast_import import import_feast_lean
    from aiinfra.steps import build_training_set as step

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    import_feast_lean()  # this process needs Feast, not torch nor Feast's import-time checks
    info = step(config_from_json(config), Path(training_set.path))
    training_set.metadata.update(
        {
            "rows": info.rows,
            "data_hash": info.data_hash,
            "feature_service": info.feature_service,
            "ignored_columns": list(info.ignored_columns),
        }
    )
    return info.data_hash


def validate_data(
    config: str,
    training_set: Input[Dataset],
    report: Output[HTML],
    summary: Output[Markdown],
    trigger: str = "",
) -> None:
    """Great Expectations suite from the project's schema; fails the task (and the run) on bad
    data. ``trigger``: why a monitoring rule started the run (drift is then reported only)."""
    from pathlib import Path

    from aiinfra.ops.task_process import exit_without_final_collections
    from aiinfra.project.config import config_from_json
    from aiinfra.steps import validate_training_set

    exit_without_final_collections()  # 1-1.5 s less at exit (see its docstring)
    validate_training_set(
        config_from_json(config),
        Path(training_set.path),
        Path(summary.path),
        Path(report.path),
        trigger,
    )
