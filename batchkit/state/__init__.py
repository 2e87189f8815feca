"""What batchkit keeps between runs under ``$BATCHKIT_HOME``: the journal of runs and their items
(``batchkit.db``, :mod:`~batchkit.state.journal`), durable queues (``queue.db``,
:mod:`~batchkit.state.queue`), item keys, and run locks."""
