"""Where items come from: any iterable, a file walk (:func:`~batchkit.sources.files.files`), lines
of a file or stdin."""
