"""Helpers shared by the handlers: async job answers and background-work plumbing."""

from __future__ import annotations

from collections.abc import Callable

from flask import jsonify, request, url_for

from ..services.jobs import Job
from ..state import get_state

TRUE_VALUES = {"1", "true", "yes", "on"}


def wants_async(body: dict | None = None) -> bool:
    """True for ``?async=1`` or ``"async": true`` in the JSON body."""
    if request.args.get("async", "").strip().lower() in TRUE_VALUES:
        return True
    return bool(body and body.get("async") is True)


def job_accepted(job: Job):
    """``202`` with the job's snapshot and where to poll it."""
    response = jsonify({"job_id": job.id, "job": job.snapshot()})
    response.status_code = 202
    response.headers["Location"] = url_for("jobs.get_job", job_id=job.id)
    return response


def run_or_submit(kind: str, work: Callable[[Job | None], tuple[int, object]], asynchronous: bool):
    """Run ``work`` now and answer its report, or start it as a job and answer 202."""
    if asynchronous:
        return job_accepted(get_state().jobs.submit(kind, work))
    status, report = work(None)
    response = jsonify(report)
    response.status_code = status
    return response
