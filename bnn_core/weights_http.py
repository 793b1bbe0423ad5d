"""Downloads of pretrained weights over http(s): iopath's HTTPURLHandler, with the file
size bounded while it streams and the cache in bnn's own cache folder
(``$BNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/bnn``, else ``~/.cache/bnn``)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from iopath.common.file_io import HTTPURLHandler, file_lock

from bnn_core.errors import BnnError
from bnn_core.weights_errors import WeightsFormatError, WeightsSourceError

#: Seconds to wait for a server to connect or send the next bytes.
TIMEOUT_S = 60
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The folder bnn caches downloads in."""
    configured = os.environ.get("BNN_CACHE_DIR")
    if configured:
        return Path(os.path.expanduser(configured))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(base)) / "bnn"


class BoundedHTTPHandler(HTTPURLHandler):
    """iopath's handler of ``http://`` and ``https://`` URLs, downloading into bnn's cache
    (``weights/`` in :func:`cache_dir`) and refusing files larger than ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def _get_supported_prefixes(self) -> list[str]:
        return ["http://", "https://"]

    def _get_local_path(
        self, path: str, force: bool = False, cache_dir: str | None = None, **kwargs: Any
    ) -> str:
        self._check_kwargs(kwargs)
        target = _cache_file(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WeightsSourceError(
                f"the download cache {target.parent} cannot be created ({exc.strerror}); set "
                "BNN_CACHE_DIR to a writable folder"
            ) from None
        with file_lock(str(target)):
            if force or not target.is_file():
                _download(path, target, self.max_bytes)
        return str(target)

    def fetch(self, url: str, sha256: str | None) -> Path:
        """The cached copy of ``url``, downloaded again if the copy does not have ``sha256``
        (a damaged or outdated cache entry)."""
        path = Path(self._get_local_path(url))
        if sha256 is not None and sha256_of(path) != sha256:
            path = Path(self._get_local_path(url, force=True))
        return path


def _cache_file(url: str) -> Path:
    """The cache file of ``url``: its file name, prefixed by a digest of the whole URL so
    that different URLs never share a file and no URL can name a path outside the cache."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", urlparse(url).path.rpartition("/")[2])[:100]
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir() / "weights" / f"{digest}-{name.lstrip('.') or 'weights'}"


def _download(url: str, target: Path, max_bytes: int) -> None:
    """Stream ``url`` into ``target`` atomically, stopping past ``max_bytes``."""
    parsed = urlparse(url)
    if not parsed.hostname:
        raise WeightsSourceError(f"the pretrained weights URL {url!r} names no host")
    request = urllib.request.Request(url, headers={"User-Agent": "bnn"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(url, int(declared), max_bytes)
            _stream(response, url, target, max_bytes)
    except BnnError:
        raise
    except urllib.error.HTTPError as exc:
        raise WeightsSourceError(
            f"cannot download the pretrained weights {url}: the server answered "
            f"{exc.code} {exc.reason}"
        ) from None
    except urllib.error.URLError as exc:
        raise WeightsSourceError(
            f"cannot download the pretrained weights {url}: the host {parsed.hostname!r} "
            f"cannot be reached ({exc.reason})"
        ) from None
    except (http.client.HTTPException, ValueError, OSError) as exc:
        raise WeightsSourceError(
            f"cannot download the pretrained weights {url}: {type(exc).__name__}: {exc}"
        ) from None


def _stream(response: Any, url: str, target: Path, max_bytes: int) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            total = 0
            while chunk := response.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(url, total, max_bytes)
                out.write(chunk)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _too_large(url: str, size: int, max_bytes: int) -> WeightsFormatError:
    return WeightsFormatError(
        f"the pretrained weights {url} are {size:,} bytes or more; weights files are at most "
        f"{max_bytes:,} bytes"
    )


def sha256_of(data: Path | bytes) -> str:
    """The SHA-256 (hex) of ``data``, or of the file at that path."""
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    sha = hashlib.sha256()
    with open(data, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()
