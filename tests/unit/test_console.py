"""The run console: kfp.local's task events (formatted by kfp's own functions) become one line
per task with its result; everything else goes to the log only; no terminal codes in a file."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
from kfp.local import logging_utils, status

from aiinfra_cli.console import CommandFailed, Console, run_console


def _kfp_task(name: str, outcome: status.Status) -> None:
    """What kfp.local writes around one task (its logger, then the task's own output)."""
    with logging_utils.local_logger_context():
        task = logging_utils.format_task_name(name)
        logging.info(f"Executing task {task}")
        print("    [KFP Executor] a line of the task's own log")
        logging.info(f"Task {task} finished with status {logging_utils.format_status(outcome)}")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_task_is_one_line_with_its_result_and_the_rest_goes_to_the_log(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    log = tmp_path / "run.log"
    console = Console(out, log, verbose=False, describe=lambda task: f"result of {task}")
    with console.capturing():
        console.say("pipeline     demo")
        _kfp_task("build-training-set", status.Status.SUCCESS)
        print("a library's warning", file=sys.stderr)  # where Python's warnings are written
        _kfp_task("train-model", status.Status.FAILURE)
    lines = out.getvalue().splitlines()
    assert lines[0] == "pipeline     demo"
    assert lines[1].split()[:2] == ["ok", "build-training-set"]
    assert lines[1].endswith("result of build-training-set")
    assert lines[2].split()[:2] == ["FAILED", "train-model"]
    assert len(lines) == 3 and "\x1b" not in out.getvalue()  # not a terminal: plain
    text = log.read_text()
    assert "a line of the task's own log" in text and "a library's warning" in text
    assert "\x1b" not in text  # the log is plain text too
    assert console.failed == ["train-model"]


def test_a_terminal_gets_the_live_line_and_colours(tmp_path: Path) -> None:
    out = _Terminal()
    console = Console(out, tmp_path / "run.log", verbose=False, describe=lambda task: "")
    with console.capturing():
        _kfp_task("validate-data", status.Status.SUCCESS)
    assert "\x1b[32mok" in out.getvalue()


def test_verbose_streams_the_whole_log(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(out, tmp_path / "run.log", verbose=True, describe=lambda task: "")
    with console.capturing():
        _kfp_task("validate-data", status.Status.SUCCESS)
    assert "a line of the task's own log" in out.getvalue()


def test_a_failure_is_one_message_and_its_traceback_is_in_the_log(tmp_path: Path) -> None:
    console = run_console(tmp_path, tmp_path / "pipeline_root", "run", False, io.StringIO())
    with pytest.raises(CommandFailed) as failed, console:
        raise ValueError("the label table has no rows")
    assert str(failed.value) == "run failed: the label table has no rows"
    log = failed.value.log_file.read_text()
    assert failed.value.log_file.parent == tmp_path / "logs"
    assert "Traceback" in log and "ValueError: the label table has no rows" in log
