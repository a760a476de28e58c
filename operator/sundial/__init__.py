"""sundial: CronConfig custom resources turned into scheduled, exactly-once runs."""

from sundial.jobs.registry import job

__all__ = ["job"]
__version__ = "0.1.0"
