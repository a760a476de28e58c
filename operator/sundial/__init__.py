"""sundial: CronConfig custom resources turned into scheduled, exactly-once runs."""

from sundial.jobs.context import JobContext, JobFailed
from sundial.jobs.registry import job

__all__ = ["JobContext", "JobFailed", "job"]
__version__ = "0.1.0"
