"""Shadow traffic: the challenger answers a copy of live requests, after the caller has its
answer, and its answers are only logged.

With ``serving.shadow`` on, the service starts a process of its own for ``@challenger``
(:mod:`aiinfra.runtime.shadow_worker`, which loads and follows the alias itself). For a share
of the ``/predict`` requests (``serving.shadow_share``) the request hands a job to a bounded
queue and goes on; a sender thread encodes it as JSON and writes it to the process's pipe.
The challenger's forward pass therefore never holds the worker's GIL (a thread in the worker
did: the caller then waited up to Python's 5 ms switch interval). The process logs each
shadowed request under ``<home>/serving/shadow/`` with its request id, both versions' answers
and both forward-pass latencies; ``aiinfra shadow-report`` compares them
(:mod:`aiinfra.monitoring.shadow_report`).

A shadow never affects answers: when the queue is full, or the process is down, a request is
not shadowed (counted in ``skipped``; jobs already in the pipe of a process that dies are lost
with it). A process that died is logged once and started again, at most once per
``RESTART_SECONDS``; it exits when the service does (a daemon process, and the end of its
pipe).
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import queue
import random
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import pandas as pd

from aiinfra.project.config import PlatformConfig
from aiinfra.project.schema import Schema
from aiinfra.runtime import shadow_worker
from aiinfra.runtime.shadow_worker import Job

log = logging.getLogger(__name__)
MAX_PENDING = 64  # shadowed requests waiting for the sender thread
RESTART_SECONDS = 30.0  # a dead shadow process is started again at most this often
FLUSH_SECONDS = 60.0  # how long flush() waits for the process's acknowledgement


@dataclass(frozen=True)
class _Flush:
    done: threading.Event


class Shadow:
    """The service's side of shadow traffic: the queue, the sender thread, the process."""

    def __init__(self, config: PlatformConfig, schema: Schema) -> None:
        self.share = config.serving.shadow_share
        self.skipped = 0  # requests not shadowed: the sender was behind, or the process down
        self._random = random.Random()
        self._queue: queue.Queue[Job | _Flush] = queue.Queue(maxsize=MAX_PENDING)
        self._counting = threading.Lock()
        self._spawn_args = (config.to_json(), json.dumps(schema.to_dict()))
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._started_at = 0.0
        self._flushes = itertools.count()
        self._start_process()
        threading.Thread(target=self._forward, name="shadow-sender", daemon=True).start()

    @property
    def pid(self) -> int | None:
        """The shadow process's id (None while it is down)."""
        process = self._process  # one read: the sender thread may drop it meanwhile
        return None if process is None else process.pid

    def send(
        self,
        features: pd.DataFrame,
        rows: list[dict[str, Any]],
        champion_response: dict[str, Any],
        champion_ms: float,
        request_id: str | None,
    ) -> bool:
        """Queue the challenger's run on this request without waiting; True if it was queued.
        The caller must not change what it passed."""
        if self._random.random() >= self.share:
            return False
        job = Job(
            request_id,
            champion_response.get("model_name"),
            champion_response["model_version"],
            champion_response["predictions"],
            champion_ms,
            rows,
            features,
        )
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._skip()
            return False
        return True

    def flush(self) -> None:
        """Wait until the process has handled every job queued so far (logged it, or dropped
        it while it has no challenger) and its log is written (tests, shutdown)."""
        request = _Flush(threading.Event())
        self._queue.put(request)  # behind every job queued so far
        request.done.wait(FLUSH_SECONDS + 5)

    def _skip(self) -> None:
        with self._counting:
            self.skipped += 1

    def _forward(self) -> None:
        """The sender thread: encoding and the pipe write happen here, off the request path
        (the write is blocking I/O, which releases the GIL)."""
        while True:
            item = self._queue.get()
            try:
                if isinstance(item, _Flush):
                    self._flush_process()
                    item.done.set()
                else:
                    self._deliver(item)
            except Exception:  # the sender must live on, or every later job would be lost
                log.exception("shadow job not sent")

    def _deliver(self, job: Job) -> None:
        conn = self._live_connection()
        if conn is None:
            self._skip()
            return
        try:
            conn.send_bytes(shadow_worker.encode_job(job))
        except OSError:  # the process died (a broken pipe)
            self._skip()
            self._lost()

    def _flush_process(self) -> None:
        conn = self._conn
        if conn is None:
            return  # nothing sent to a process that is down is waiting to be logged
        number = next(self._flushes)
        deadline = time.monotonic() + FLUSH_SECONDS
        try:
            conn.send_bytes(shadow_worker.flush_request(number))
            while conn.poll(max(0.0, deadline - time.monotonic())):
                # An acknowledgement of an earlier flush that timed out may come first.
                if json.loads(conn.recv_bytes()).get("id") == number:
                    return
        except (OSError, EOFError):
            self._lost()
            return
        log.warning("the shadow process did not acknowledge a flush in %.0f s", FLUSH_SECONDS)

    def _live_connection(self) -> Connection | None:
        """The pipe to the shadow process; when it is down, a new one if it is time. (A dead
        process is noticed by the pipe: its next write or read fails. No check per job: each
        syscall there is one more hand-over of the GIL with the request path.)"""
        if self._conn is None and time.monotonic() - self._started_at >= RESTART_SECONDS:
            self._start_process()
        return self._conn

    def _start_process(self) -> None:
        # "spawn", never fork: the worker has torch's threads, which a fork would not carry.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=shadow_worker.main,
            args=(theirs, *self._spawn_args),
            name="aiinfra-shadow",
            daemon=True,  # ended when the service exits (else by EOF on its pipe)
        )
        self._started_at = time.monotonic()
        try:
            process.start()
        except Exception:
            log.exception("could not start the shadow process; retrying in %.0f s", RESTART_SECONDS)
            ours.close()
            return
        finally:
            theirs.close()  # the process holds its own copy: our closing ours is its EOF
        self._process, self._conn = process, ours
        log.info("shadow process started (pid %s)", process.pid)

    def _lost(self) -> None:
        """Log a dead shadow process once and forget it (it is restarted later)."""
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(timeout=1)
            log.error(
                "the shadow process (pid %s) exited with code %s: requests are not shadowed "
                "until it is restarted (at most every %.0f s)",
                process.pid,
                process.exitcode,
                RESTART_SECONDS,
            )
