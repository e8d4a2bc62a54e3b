"""The batch mode: score an interval's rides from files, S3 or SQL and write predictions out.

``run_interval("2021-03", input=..., output=...)`` is the Python API; ``deploy batch`` the CLI.
"""

from deploy_modes.batch.intervals import Interval, resolve_intervals
from deploy_modes.batch.job import BatchJob, Summary
from deploy_modes.batch.runner import run_interval, run_intervals

__all__ = ["BatchJob", "Interval", "Summary", "resolve_intervals", "run_interval", "run_intervals"]
