"""Jobs: ``@bk.job`` (:mod:`~batchkit.jobs.job`), options from signatures, finding jobs by name,
path or ``module:attr`` (:mod:`~batchkit.jobs.find`), and shell commands as jobs."""

from .bound import BoundJob
from .job import Job, job

__all__ = ["BoundJob", "Job", "job"]
