"""Background jobs: list, poll progress and the final report, cancel."""

from __future__ import annotations

from flask import Blueprint

from ..errors import NotFound
from ..services.jobs import FINISHED_STATES
from ..state import get_state
from ..openapi import api_doc
from ..schemas.jobs import JobListSchema, JobSnapshotSchema


bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def _job_or_404(job_id: str):
    job = get_state().jobs.get(job_id)
    if job is None:
        raise NotFound("Job not found")
    return job


@bp.get("")
@api_doc("Remembered jobs, oldest first", response=JobListSchema)
def list_jobs():
    return {"jobs": [job.snapshot() for job in get_state().jobs.list()]}


@bp.get("/<job_id>")
@api_doc("A job's progress and, once finished, its report", response=JobSnapshotSchema)
def get_job(job_id: str):
    return _job_or_404(job_id).snapshot()


@bp.post("/<job_id>/cancel")
@api_doc("Ask a job to stop (202), or the finished job as it is (200)",
         response=JobSnapshotSchema, other_statuses={202: JobSnapshotSchema})
def cancel_job(job_id: str):
    """Ask a running job to stop (``202``); a finished job is returned as it is (``200``)."""
    job = _job_or_404(job_id)
    if job.state in FINISHED_STATES:
        return job.snapshot(), 200
    get_state().jobs.cancel(job_id)
    return job.snapshot(), 202


@bp.delete("/<job_id>")
@api_doc("Cancel a running job (202) or forget a finished one (200)",
         response=JobSnapshotSchema, other_statuses={202: JobSnapshotSchema})
def delete_job(job_id: str):
    """Cancel a running job (``202``), or forget a finished one (``200``)."""
    job = _job_or_404(job_id)
    if job.state in FINISHED_STATES:
        get_state().jobs.forget(job_id)
        return job.snapshot(), 200
    get_state().jobs.cancel(job_id)
    return job.snapshot(), 202
