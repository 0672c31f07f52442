"""Background jobs: poll progress and the final report, or cancel."""

from __future__ import annotations

from flask import Blueprint

from ..errors import NotFound
from ..state import get_state

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def _job_or_404(job_id: str):
    job = get_state().jobs.get(job_id)
    if job is None:
        raise NotFound("Job not found")
    return job


@bp.get("")
def list_jobs():
    return {"jobs": [job.snapshot() for job in get_state().jobs.list()]}


@bp.get("/<job_id>")
def get_job(job_id: str):
    return _job_or_404(job_id).snapshot()


@bp.delete("/<job_id>")
def cancel_job(job_id: str):
    _job_or_404(job_id)
    job = get_state().jobs.cancel(job_id)
    return job.snapshot(), 202


@bp.post("/<job_id>/cancel")
def cancel_job_post(job_id: str):
    return cancel_job(job_id)
