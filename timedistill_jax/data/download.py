"""Where the data files live, and the one download the package ever does (the ETT files).

Only the four ETT files have a stable public URL and a licence that allows fetching them as they
are; every other benchmark file must be put in the data folder by hand. A download is checked
against the sha256 of the published file and moved into place atomically, so a data folder
never holds a partial or corrupted file that a later run would silently train on.
"""

import hashlib
import http.client
import os
from pathlib import Path
import tempfile
import urllib.error
import urllib.request

import tqdm

from timedistill_jax.errors import DataError

DATA_DIR_ENV = "TIMEDISTILL_DATA_DIR"
DATA_URL_ENV = "TIMEDISTILL_DATA_URL"
ETT_BASE_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"

_CHUNK = 1 << 16


def default_data_dir() -> Path:
  """``$XDG_CACHE_HOME/timedistill_jax``, or ``~/.cache/timedistill_jax`` without it."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(cache) / "timedistill_jax"


def resolve_data_dir(data_dir=None) -> Path:
  """The data folder: the argument, else ``$TIMEDISTILL_DATA_DIR``, else ``default_data_dir()``."""
  if data_dir is not None:
    return Path(data_dir).expanduser()
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    return Path(env).expanduser()
  return default_data_dir()


def source_url(filename: str) -> str:
  """Download URL of an ETT file; ``$TIMEDISTILL_DATA_URL`` replaces the base (tests, mirrors)."""
  base = os.environ.get(DATA_URL_ENV) or ETT_BASE_URL
  if not base.endswith("/"):
    base += "/"
  return base + filename


def manual_fix(dest: Path) -> str:
  """The sentence that tells a user how to provide ``dest`` without the network."""
  return (f"Put the file there by hand: save it as {dest} (or gzip-compressed as "
          f"{dest.name}.gz in {dest.parent}), or set {DATA_DIR_ENV} (or pass data_dir=) to a "
          f"folder that already holds {dest.name}.")


def _why(e: Exception) -> str:
  """A short, readable cause of a failed download."""
  if isinstance(e, urllib.error.HTTPError):
    return f"HTTP error {e.code}: {e.reason}"
  if isinstance(e, urllib.error.URLError):
    r = e.reason
    return f"{type(r).__name__}: {r}" if isinstance(r, BaseException) else str(r)
  return f"{type(e).__name__}: {e}"


def download(url: str, dest: Path, sha256: str, timeout: float = 30) -> Path:
  """Fetches ``url`` into ``dest`` if its content has the given sha256; returns ``dest``.

  The bytes go to a temporary file in ``dest``'s folder (same file system, so the final
  ``os.replace`` is atomic) and are hashed on the way; the temporary file is removed on any
  failure, so ``dest`` either appears complete and verified or not at all.
  """
  dest = Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
  tmp = Path(tmp_name)
  try:
    digest = hashlib.sha256()
    try:
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        with tqdm.tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                       desc=f"downloading {dest.name}", disable=None) as bar:
          while chunk := response.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
      raise DataError(f"downloading {url} failed ({_why(e)}). {manual_fix(dest)}") from e
    received = digest.hexdigest()
    if received != sha256.lower():
      raise DataError(
          f"checksum mismatch for {url}: expected sha256 {sha256}, received {received}. "
          f"The file was not kept. {manual_fix(dest)} Its uncompressed content must have "
          f"sha256 {sha256}.")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared data folder unreadable to others.
    os.replace(tmp, dest)
  finally:
    tmp.unlink(missing_ok=True)
  return dest
