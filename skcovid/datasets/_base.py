"""Where fetched datasets live, and downloads that never leave half-written files."""

import http.client
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from skcovid._core.files import atomic_write


def get_data_home(data_home=None):
    """The folder skcovid's fetchers keep datasets in (created if needed).

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        ``None`` means ``$SKCOVID_DATA`` if set, else ``~/skcovid_data``.

    Returns
    -------
    data_home : pathlib.Path
    """
    if data_home is None:
        data_home = os.environ.get("SKCOVID_DATA", Path("~") / "skcovid_data")
    path = Path(data_home).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def download(url, path, *, n_retries=3, delay=1.0, progress=True):
    """Download ``url`` to ``path`` atomically.

    The bytes go to a temporary file beside ``path``, renamed onto it only
    when the transfer is complete (its length checked against the server's
    ``Content-Length``), so an interrupted download leaves nothing behind.

    Parameters
    ----------
    url : str
    path : str or path-like
    n_retries : int, default=3
        Further attempts after a network error.
    delay : float, default=1.0
        Seconds between attempts.
    progress : bool, default=True
        A progress bar on stderr.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    OSError
        When every attempt failed; the message names the URL.
    """
    path = Path(path)
    for attempt in range(n_retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                expected = response.headers.get("Content-Length")
                expected = int(expected) if expected is not None else None
                received = 0
                with atomic_write(path, "wb") as file, tqdm(
                    total=expected, unit="B", unit_scale=True, desc=path.name,
                    disable=not progress, file=sys.stderr, leave=False,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        file.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                    if expected is not None and received != expected:
                        raise OSError(f"got {received} of {expected} bytes")
            return path
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # timeouts, short reads
            if attempt == n_retries or getattr(exc, "code", None) == 404:
                raise OSError(f"Could not download {url}: {exc}") from exc
            time.sleep(delay)
    raise AssertionError("unreachable")


def replace_dir(source, target):
    """Move the folder ``source`` onto ``target``, replacing any folder there."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)
