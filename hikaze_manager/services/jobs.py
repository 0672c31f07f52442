"""Background jobs (scan, promotion, legacy migration) with progress, a final report and cancel."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ApiError, Conflict, database_unavailable, storage_error

logger = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED_STATES = {SUCCEEDED, FAILED, CANCELLED}
KEEP_FINISHED = 100


class JobCancelled(Exception):
    """Raised inside a job's work function when cancellation was requested.

    Work that stops between atomic steps may pass what it finished (``result``, ``status_code``),
    so the job still reports the items that were done before it stopped.
    """

    def __init__(self, result: object = None, status_code: int | None = None):
        super().__init__("cancelled")
        self.result = result
        self.status_code = status_code


@dataclass
class Job:
    """One unit of background work and what is known about its progress."""

    id: str
    kind: str
    state: str = QUEUED
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    message: str = ""
    result: object = None
    status_code: int | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- called from the work function -------------------------------------------------------
    @property
    def cancel_requested(self) -> bool:
        """True once someone asked this job to stop."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise JobCancelled()

    def set_totals(self, *, files: int | None = None, bytes_: int | None = None) -> None:
        """Record how much work there is (may grow as work is discovered)."""
        with self._lock:
            if files is not None:
                self.files_total = files
            if bytes_ is not None:
                self.bytes_total = bytes_

    def advance(self, *, files: int = 0, bytes_: int = 0, message: str | None = None) -> None:
        """Add finished work; cheap enough to call per hashed chunk."""
        with self._lock:
            self.files_done += files
            self.bytes_done += bytes_
            if message is not None:
                self.message = message

    # --- called by the API ---------------------------------------------------------------------
    def snapshot(self) -> dict:
        """A consistent copy for the API."""
        with self._lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "state": self.state,
                "progress": {
                    "files_done": self.files_done,
                    "files_total": self.files_total,
                    "bytes_done": self.bytes_done,
                    "bytes_total": self.bytes_total,
                    "message": self.message,
                },
                "cancel_requested": self._cancel.is_set(),
                "result": self.result,
                "status_code": self.status_code,
                "error": self.error,
                "created_at": int(self.created_at * 1000),
                "started_at": int(self.started_at * 1000) if self.started_at else None,
                "finished_at": int(self.finished_at * 1000) if self.finished_at else None,
            }


# A job's work: takes the job (for progress and cancel) and returns (status_code, report).
JobWork = Callable[[Job], "tuple[int, object]"]


class JobManager:
    """Runs each job on its own daemon thread and keeps the most recent ones for polling."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def submit(self, kind: str, work: JobWork) -> Job:
        """Start ``work`` in the background and return its job at once.

        One job of a kind runs at a time: a second scan or import while one runs is a 409 that
        names the running job, so repeated requests cannot pile up threads.
        """
        job = Job(id=f"{next(self._counter)}-{uuid.uuid4().hex[:12]}", kind=kind)
        with self._lock:
            running = next(
                (j for j in self._jobs.values() if j.kind == kind and j.state not in FINISHED_STATES),
                None,
            )
            if running is not None:
                raise Conflict(
                    f"A {kind} job is already running ({running.id})", details={"job_id": running.id}
                )
            self._jobs[job.id] = job
            self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(job, work), name=f"hikaze-job-{kind}", daemon=True
        )
        thread.start()
        return job

    def _run(self, job: Job, work: JobWork) -> None:
        with job._lock:
            job.state = RUNNING
            job.started_at = time.time()
        try:
            status_code, result = work(job)
        except JobCancelled as exc:
            state, status_code, result, error = CANCELLED, exc.status_code, exc.result, "cancelled"
        except ApiError as exc:  # an expected refusal (e.g. 503 no model types): the client's error
            state, status_code, result, error = FAILED, exc.code, None, exc.message
        except Exception as exc:  # the job's owner reads the error; the server keeps running
            # Full disk and the like (507), the database locked, gone or read-only (503): the
            # answer a request gets, not a bug of ours.
            refused = storage_error(exc) or database_unavailable(exc)
            if refused is not None:
                logger.error("[Hikaze] job %s (%s): %s", job.id, job.kind, exc)
                state, status_code, result, error = FAILED, refused.code, None, refused.message
            else:
                logger.exception("[Hikaze] job %s (%s) failed", job.id, job.kind)
                message = str(exc) or exc.__class__.__name__
                state, status_code, result, error = FAILED, 500, None, message
        else:
            state, error = SUCCEEDED, None
        if not _encodable(result):  # a snapshot that cannot be sent would break GET /api/jobs
            logger.error("[Hikaze] job %s (%s) produced a report that is not JSON", job.id, job.kind)
            state, status_code, result, error = FAILED, 500, None, "the job's report could not be encoded"
        with job._lock:
            job.state, job.status_code, job.result, job.error = state, status_code, result, error
            job.finished_at = time.time()
        job._done.set()

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if it is still remembered."""
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        """Remembered jobs, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop; it stops at its next check."""
        job = self.get(job_id)
        if job is not None and job.state not in FINISHED_STATES:
            job._cancel.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until the job finishes or ``timeout`` passes (tests and shutdown)."""
        job = self.get(job_id)
        if job is not None:
            job._done.wait(timeout)
        return job

    def forget(self, job_id: str) -> Job | None:
        """Drop a finished job from the list; a running one is kept (cancel it first)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.state in FINISHED_STATES:
                del self._jobs[job_id]
            return job

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state in FINISHED_STATES]
        for job_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job_id]


def _encodable(result: object) -> bool:
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def byte_progress(job: Job | None) -> Callable[[int], None] | None:
    """A per-chunk callback for hashing: counts bytes and stops at a cancel request."""
    if job is None:
        return None

    def progress(n: int) -> None:
        job.check_cancelled()
        job.advance(bytes_=n)

    return progress
