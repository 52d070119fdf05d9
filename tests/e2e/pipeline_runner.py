"""The training pipeline's steps as plain calls in one process, announcing each step on
stdout before it starts: what the fault tests kill at a chosen step (a kfp.local run costs
about a minute; the steps are the same functions its tasks call).

    python -m tests.e2e.pipeline_runner CONFIG_JSON_FILE RUN_NAME WORK_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiinfra import steps
from aiinfra.project.config import config_from_json


def main(config_file: str, run: str, work_dir: str) -> None:
    config = config_from_json(Path(config_file).read_text())
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data, model = work / "training_set.parquet", work / "model"

    def step(name: str) -> None:
        print(f"STEP {name}", flush=True)

    step("build-training-set")
    steps.build_training_set(config, data)
    step("validate-data")
    steps.validate_training_set(config, data, work / "validation.md")
    step("train-model")
    summary = steps.train_model(config, data, model)
    step("evaluate-model")
    evaluation = steps.evaluate_model(config, data, model)
    step("register-model")
    lineage = {"git_commit": "faults", "pipeline_run": run}
    version = steps.register_model(config, data, model, evaluation, summary, lineage)
    if evaluation.passed:
        step("promote-model")
        steps.promote_model(config, version, run)
    print(f"DONE {version} {'promoted' if evaluation.passed else 'kept'}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
