"""Ordered, bounded prefetching: decode the next images in threads while the network runs on this batch.

Decoding (Pillow, pydicom's JPEG plugins, nibabel's gzip) and resizing release
the GIL, so threads overlap them with each other and with the network; results
come back in the order of the items, and at most ``max_in_flight`` of them are
held at any time, whatever the number of items.
"""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from skcovid._core.checks import env_count


def decode_threads():
    """How many threads decode ahead: ``$SKCOVID_DECODE_THREADS``, else one per core but one, at most 4.

    The network's own threads take the cores too: on 2 cores, decoding in a
    thread of its own bought nothing (docs/benchmarks.md, prediction speed),
    so there the next slice is decoded when it is needed.
    """
    return env_count("SKCOVID_DECODE_THREADS", max(1, min(4, (os.cpu_count() or 1) - 1)))


def ordered_map(function, items, *, n_threads=None, max_in_flight=None):
    """``function(item)`` for each item, in order, computed up to ``max_in_flight`` items ahead in threads.

    Parameters
    ----------
    function : callable
    items : iterable
    n_threads : int or None, default=None
        1 computes each result when it is asked for, in this thread; None:
        :func:`decode_threads`.
    max_in_flight : int or None, default=None
        Results computed or being computed and not yet taken; None: ``2 * n_threads``.

    Yields
    ------
    result
        ``function(item)``, in the order of ``items``. An exception of
        ``function`` is raised when its item's turn comes, and the items
        after it are not waited for.
    """
    n_threads = decode_threads() if n_threads is None else n_threads
    if n_threads <= 1:
        for item in items:
            yield function(item)
        return
    max_in_flight = max(1, 2 * n_threads if max_in_flight is None else max_in_flight)
    pending = deque()
    iterator = iter(items)
    with ThreadPoolExecutor(n_threads, thread_name_prefix="skcovid-decode") as pool:
        try:
            for item in iterator:
                pending.append(pool.submit(function, item))
                if len(pending) >= max_in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
