"""The shadow process: runs ``@challenger`` on the jobs the service sends it and writes the
shadow log (:mod:`aiinfra.runtime.shadow` starts it and feeds it).

It follows ``@challenger`` itself (a :class:`ChampionSlot` of its own, polling the registry like
the service's), so the service's worker neither loads nor runs the challenger: its forward
pass never holds the worker's GIL while a caller waits.

What crosses the pipe is JSON, never pickle (request data is never unpickled): a job carries
what only the service knows (the request id, the champion's version, answers and latency, the
rows as sent and the model input it was given, as column lists); a flush request asks for an
acknowledgement once every job before it is logged. The process ends when the service's end
of the pipe closes.

It runs at the lowest CPU priority: where cores are short, the callers come first and the
shadow falls behind (requests then go unshadowed, counted by the service). The challenger's
logged latency is its forward pass's wall time, so on a saturated host it includes that wait.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pandas as pd

from aiinfra.project.config import config_from_json
from aiinfra.project.schema import Schema
from aiinfra.release import registry
from aiinfra.runtime.api import answers
from aiinfra.runtime.champion import ChampionSlot, Served
from aiinfra.runtime.prediction_log import PredictionLog

log = logging.getLogger(__name__)
JOB, FLUSH, FLUSHED = "job", "flush", "flushed"  # message kinds
NICENESS = 19  # the lowest CPU priority


@dataclass(frozen=True)
class Job:
    """One shadowed request, with what the shadow process cannot know by itself."""

    request_id: str | None
    model_name: str | None
    champion_version: str
    champion_answers: list[dict[str, Any]]
    champion_ms: float
    rows: list[dict[str, Any]]
    features: pd.DataFrame  # the model input the champion was given


def encode_job(job: Job) -> bytes:
    message = {
        "kind": JOB,
        "request_id": job.request_id,
        "model_name": job.model_name,
        "champion_version": job.champion_version,
        "champion_answers": job.champion_answers,
        "champion_ms": job.champion_ms,
        "rows": job.rows,
        "features": encode_frame(job.features),
    }
    return json.dumps(message, default=str).encode()


def decode_job(message: dict[str, Any]) -> Job:
    return Job(
        request_id=message["request_id"],
        model_name=message["model_name"],
        champion_version=message["champion_version"],
        champion_answers=message["champion_answers"],
        champion_ms=float(message["champion_ms"]),
        rows=message["rows"],
        features=decode_frame(message["features"]),
    )


def encode_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """Column lists of plain values (NaN kept: both ends are Python's json) and their dtypes.
    Per column: ``frame.to_dict`` and ``frame.dtypes`` cost 150-300 us for one row, this 25."""
    columns, dtypes = {}, {}
    for name, values in frame.items():
        columns[str(name)] = values.tolist()
        dtypes[str(name)] = str(values.dtype)
    return {"columns": columns, "dtypes": dtypes}


def decode_frame(encoded: dict[str, Any]) -> pd.DataFrame:
    """The frame :func:`encode_frame` was given: same columns, order and dtypes. Built from
    typed arrays: a frame from lists infers types, at 5x the cost for one row."""
    dtypes: dict[str, str] = encoded["dtypes"]
    columns = {name: _column(values, dtypes[name]) for name, values in encoded["columns"].items()}
    return pd.DataFrame(columns, copy=False)


def _column(values: list[Any], dtype: str) -> Any:
    try:
        return np.asarray(values, dtype=np.dtype(dtype))
    except (TypeError, ValueError):  # a pandas dtype (category, zoned datetime), or text
        return pd.Series(values).astype(dtype).array


def flush_request(number: int) -> bytes:
    return json.dumps({"kind": FLUSH, "id": number}).encode()


def flushed(number: int) -> bytes:
    return json.dumps({"kind": FLUSHED, "id": number}).encode()


def main(conn: Connection, config_json: str, schema_json: str) -> None:
    """The process's entry point (multiprocessing "spawn": nothing inherited but these)."""
    # Ctrl-C reaches the whole process group: the service shuts down and this process with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Best effort: where cores are short, the service's worker (the callers) comes first.
    os.nice(NICENESS)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s shadow[%(process)d] %(levelname)s %(message)s"
    )
    config = config_from_json(config_json)
    if config.serving.cpu_threads is not None:  # as the service does for the champion
        import torch

        torch.set_num_threads(config.serving.cpu_threads)
    slot = ChampionSlot(config, Schema.from_dict(json.loads(schema_json)), registry.CHALLENGER)
    slot.refresh_soon()
    slot.watch()
    shadow_log = PredictionLog(config.shadow_log_dir, 1.0, config.serving.log_retention_days)
    serve(conn, slot, shadow_log)


def serve(conn: Connection, slot: ChampionSlot, shadow_log: PredictionLog) -> None:
    """Run each job as it comes, until the service's end of the pipe closes."""
    while True:
        try:
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the service is gone
            return
        if message["kind"] == FLUSH:
            shadow_log.flush()
            conn.send_bytes(flushed(message["id"]))
            continue
        challenger = slot.served
        # No challenger (yet), or it is the champion's version: nothing to compare.
        if challenger is None or challenger.version == message.get("champion_version"):
            continue
        try:
            job = decode_job(message)
        except (KeyError, TypeError, ValueError):  # a sender's bug: this job only is lost
            log.exception("shadow job not readable")
            continue
        run(challenger, job, shadow_log)


def run(challenger: Served, job: Job, shadow_log: PredictionLog) -> None:
    """The challenger's answers to ``job``, logged beside the champion's."""
    try:
        started = time.perf_counter()
        model = challenger.model
        predicted = answers(model.schema, model.classes, model.predict(job.features))
        spent = (time.perf_counter() - started) * 1000
        shadow_log.record(
            job.rows,
            {
                "model_name": job.model_name,
                "model_version": challenger.version,
                "predictions": predicted,
            },
            None,
            job.request_id,
            extra={
                "champion_version": job.champion_version,
                "latency_ms": round(spent, 3),
                "champion_latency_ms": round(job.champion_ms, 3),
                "pid": os.getpid(),  # the process the challenger ran in (not the service's)
            },
            per_row=[{"champion_answer": a} for a in job.champion_answers],
        )
    except Exception:  # the challenger's failure is its own; the caller was answered
        log.exception("shadow prediction of version %s failed", challenger.version)
