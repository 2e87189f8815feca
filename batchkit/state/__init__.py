"""What batchkit keeps between runs, in one SQLite file under ``$BATCHKIT_HOME``: the journal of
runs and their items (:mod:`~batchkit.state.journal`), item keys, and run locks."""
