"""``python -m batchkit``: the same as the ``batchkit`` command."""

from .cli import main

if __name__ == "__main__":
    main()
