"""What a run tells the outside world, and how runs are started on a schedule: logs, pings,
notifications, metrics (:mod:`~batchkit.ops.operations`), crontab entries and the scheduler."""
