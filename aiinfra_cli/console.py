"""What a person sees while a command runs: one line per pipeline task, the full logs in a file.

Everything the libraries and the pipeline's tasks print (kfp.local streams each task's output
through this process) goes to a log file under the home; the terminal gets one line per task
with its status, seconds and the result that matters, and the lines the command itself says.
On a terminal the running task shows a live timer; elsewhere (a file, CI) plain lines only, no
ANSI codes. ``--verbose`` streams the full log to the terminal as well.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# kfp.local's own log lines (kfp 2.17) that mark a task's start and end.
_STARTED = re.compile(r"Executing task '(?P<task>[^']+)'")
_FINISHED = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>[A-Z]+)")
_CACHED = re.compile(r"Task (?P<task>\S+) cache hit")
_SPINNER = "|/-\\"


def log_path(home: Path, command: str) -> Path:
    """Where a command's full log goes: one file per run, never overwritten."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return home / "logs" / f"{command}-{stamp}.log"


@dataclass
class _Task:
    name: str
    started: float = field(default_factory=time.monotonic)


class Console:
    """The terminal side of a run. ``describe(task)`` returns the result to show for a
    finished task (called once, after kfp.local reports it done)."""

    def __init__(
        self, out: TextIO, log_file: Path, verbose: bool, describe: Callable[[str], str]
    ) -> None:
        self.out = out
        self.log_file = log_file
        self.verbose = verbose
        self.live = out.isatty() and not verbose
        self.describe = describe
        self.failed: list[str] = []
        self._running: _Task | None = None
        self._log: TextIO | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def say(self, line: str) -> None:
        """A line of the command's own output: on the terminal and in the log."""
        with self._lock:
            self._clear_live()
            self.out.write(line + "\n")
            self.out.flush()
        if self._log is not None:
            self._log.write(line + "\n")

    def _clear_live(self) -> None:
        if self.live and self._running is not None:
            self.out.write("\r\x1b[2K")

    def _line(self, text: str) -> None:
        """Log text (ANSI removed): kfp.local's task events become task lines."""
        plain = _ANSI.sub("", text)
        if started := _STARTED.search(plain):
            with self._lock:
                self._running = _Task(started["task"])
        elif finished := _FINISHED.search(plain):
            self._finish(finished["task"], finished["status"])
        elif cached := _CACHED.search(plain):
            self._finish(cached["task"], "CACHED")

    def _finish(self, task: str, status: str) -> None:
        running = self._running
        seconds = time.monotonic() - running.started if running and running.name == task else 0.0
        ok = status in ("SUCCESS", "CACHED")
        if not ok:
            self.failed.append(task)
        result = self._result(task) if ok else "see the log"
        mark = {"SUCCESS": "ok", "CACHED": "cached"}.get(status, "FAILED")
        with self._lock:
            self._clear_live()
            self._running = None
            colour = ("\x1b[32m" if ok else "\x1b[31m") if self.live else ""
            reset = "\x1b[0m" if colour else ""
            self.out.write(
                f"  {colour}{mark:<6}{reset} {task:<24} {seconds:6.1f} s  {result}".rstrip() + "\n"
            )
            self.out.flush()

    def _result(self, task: str) -> str:
        try:
            return self.describe(task)
        except (OSError, ValueError, KeyError) as exc:  # a summary is never worth a failed run
            return f"(no summary: {exc})"

    def _tick(self) -> None:
        """The running task's name and timer, rewritten in place (terminals only)."""
        frame = 0
        while not self._stop.wait(0.25):
            with self._lock:
                running = self._running
                if running is None:
                    continue
                seconds = time.monotonic() - running.started
                spin = _SPINNER[frame % len(_SPINNER)]
                self.out.write(f"\r\x1b[2K  {spin:<6} {running.name:<24} {seconds:6.1f} s")
                self.out.flush()
                frame += 1

    @contextlib.contextmanager
    def capturing(self) -> Iterator[Console]:
        """Send Python's stdout and stderr (kfp.local's logs and task output, warnings,
        progress bars) and the root logger to the log file, or to the log and the terminal
        with ``verbose``. An exception is written to the log, with its traceback, and raised."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a", encoding="utf-8") as log:
            self._log = log
            tee = _LogStream(log, self._line, self.out if self.verbose else None)
            ticker = threading.Thread(target=self._tick, name="console", daemon=True)
            if self.live:
                ticker.start()
            try:
                with (
                    contextlib.redirect_stdout(tee),
                    contextlib.redirect_stderr(tee),
                    _root_logger_to(tee),
                ):
                    yield self
            except Exception:
                log.write(traceback.format_exc())
                raise
            finally:
                tee.flush()
                self._stop.set()
                if self.live:
                    ticker.join()
                with self._lock:
                    self._clear_live()
                    self._running = None
                self._log = None


@contextlib.contextmanager
def _root_logger_to(stream: TextIO) -> Iterator[None]:
    """The root logger's stream handlers write to ``stream`` for the duration (they hold the
    stream they were made with, so redirecting sys.stderr alone does not reach them)."""
    root = logging.getLogger()
    swapped = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.stream for h in swapped]
    for handler in swapped:
        handler.setStream(stream)
    try:
        yield
    finally:
        for handler, old in zip(swapped, previous, strict=True):
            handler.setStream(old)


class _LogStream:
    """A text stream writing to the log (and the terminal when verbose) and handing every
    complete line to ``on_line``."""

    def __init__(self, log: TextIO, on_line: Callable[[str], None], echo: TextIO | None) -> None:
        self.log = log
        self.on_line = on_line
        self.echo = echo
        self._pending = ""

    def write(self, text: str) -> int:
        self.log.write(_ANSI.sub("", text))
        if self.echo is not None:
            self.echo.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.on_line(line)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        if self.echo is not None:
            self.echo.flush()

    def isatty(self) -> bool:  # libraries ask before drawing progress bars or colours
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


@contextlib.contextmanager
def run_console(
    home: Path, pipeline_root: Path, command: str, verbose: bool, out: TextIO
) -> Iterator[Console]:
    """A command's console: task lines from the newest run under ``pipeline_root``, the full
    log under ``home``. A failure leaves one line (and where the log is), not a traceback:
    :class:`CommandFailed` carries it; with ``verbose`` the traceback was streamed already."""
    from pipelines import run_results

    def describe(task: str) -> str:
        run = run_results.latest_run(pipeline_root)
        return "" if run is None else run_results.task_summary(run / task)

    console = Console(out, log_path(home, command), verbose, describe)
    try:
        with console.capturing():
            yield console
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        raise CommandFailed(f"{command} failed: {exc}", console.log_file) from exc


class CommandFailed(RuntimeError):
    """A command stopped; the message is for a person, the details are in ``log_file``."""

    def __init__(self, message: str, log_file: Path) -> None:
        super().__init__(message)
        self.log_file = log_file
