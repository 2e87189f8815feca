"""The smallest job: upper-case each item. A template for writing your own.

    batchkit run shout --input words.txt --suffix '?'
    printf 'a\\nb\\n' | batchkit run shout --input -
"""

import batchkit as bk


@bk.job(backend="thread")
def shout(item: str, suffix: str = "!") -> str:
    """Upper-case each item.

    Args:
        suffix: Text appended to each upper-cased item.
    """
    return item.upper() + suffix
