"""Tests of the ETT download against a local HTTP server (never the internet)."""

import dataclasses
import functools
import hashlib
import http.server
import os
from pathlib import Path
import socket
import threading

import numpy as np
import pandas as pd
import pytest

from timedistill_jax.data import DATASETS
from timedistill_jax.data import default_data_dir
from timedistill_jax.data import download
from timedistill_jax.data import load_dataset
from timedistill_jax.data import resolve_data_dir
from timedistill_jax.errors import DataError

KW = dict(seq_len=96, label_len=48, pred_len=96)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):  # keep pytest output clean
    pass


@pytest.fixture
def server(tmp_path, monkeypatch):
  """Serves ``tmp_path/served`` on 127.0.0.1 and points ``TIMEDISTILL_DATA_URL`` at it."""
  root = tmp_path / "served"
  root.mkdir()
  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
  thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.05),
                            daemon=True)
  thread.start()
  url = f"http://127.0.0.1:{httpd.server_address[1]}/"
  monkeypatch.setenv("TIMEDISTILL_DATA_URL", url)
  yield root, url
  httpd.shutdown()
  httpd.server_close()
  thread.join()


def _fake_etth1(folder: Path, num_rows: int = 14500) -> str:
  """Writes an ETTh1-shaped CSV (hourly, 7 variates) and returns its sha256."""
  rng = np.random.default_rng(0)
  frame = pd.DataFrame(rng.normal(size=(num_rows, 7)).round(3),
                       columns=["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"])
  frame.insert(0, "date", pd.date_range("2016-07-01", periods=num_rows, freq="h")
               .strftime("%Y-%m-%d %H:%M:%S"))
  path = folder / "ETTh1.csv"
  frame.to_csv(path, index=False)
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_download_then_load(server, tmp_path, monkeypatch):
  root, _ = server
  sha = _fake_etth1(root)
  monkeypatch.setitem(DATASETS, "etth1", dataclasses.replace(DATASETS["etth1"], sha256=sha))
  cache = tmp_path / "cache" / "nested"  # created by the download
  splits = load_dataset("etth1", data_dir=cache, **KW)
  assert os.listdir(cache) == ["ETTh1.csv"]  # no temporary file left
  assert (cache / "ETTh1.csv").read_bytes() == (root / "ETTh1.csv").read_bytes()
  assert len(splits.train) == 8640 - 96 - 96 + 1 and splits.source == str(cache / "ETTh1.csv")
  # The second load reads the local copy: the server no longer has the file.
  (root / "ETTh1.csv").unlink()
  again = load_dataset("etth1", data_dir=cache, **KW)
  np.testing.assert_array_equal(again.test.data, splits.test.data)


def test_download_function_writes_atomically(server, tmp_path):
  root, url = server
  sha = _fake_etth1(root, num_rows=50)
  dest = tmp_path / "out" / "ETTh1.csv"
  assert download(url + "ETTh1.csv", dest, sha) == dest
  assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
  assert os.listdir(dest.parent) == ["ETTh1.csv"]


def test_wrong_checksum(server, tmp_path):
  root, url = server
  sha = _fake_etth1(root)  # not the real ETTh1, so the registered checksum cannot match
  cache = tmp_path / "cache"
  with pytest.raises(DataError) as info:
    load_dataset("etth1", data_dir=cache, **KW)
  message = str(info.value)
  assert "checksum mismatch" in message and url + "ETTh1.csv" in message
  assert DATASETS["etth1"].sha256 in message and sha in message
  assert str(cache / "ETTh1.csv") in message
  assert os.listdir(cache) == []


def test_server_unreachable(tmp_path, monkeypatch):
  monkeypatch.setenv("TIMEDISTILL_DATA_URL", f"http://127.0.0.1:{_closed_port()}/")
  cache = tmp_path / "cache"
  with pytest.raises(DataError) as info:
    load_dataset("etth1", data_dir=cache, **KW)
  message = str(info.value)
  assert "failed" in message and "refused" in message.lower()
  assert str(cache / "ETTh1.csv") in message and "TIMEDISTILL_DATA_DIR" in message
  assert os.listdir(cache) == []


def test_http_404(server, tmp_path):
  cache = tmp_path / "cache"
  with pytest.raises(DataError, match="HTTP error 404") as info:
    load_dataset("etth2", data_dir=cache, **KW)
  assert str(cache / "ETTh2.csv") in str(info.value)
  assert os.listdir(cache) == []


def test_timeout(tmp_path):
  # A socket that listens but never answers: the connection opens, the response never comes.
  with socket.socket() as silent:
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/ETTh1.csv"
    with pytest.raises(DataError, match="timed out"):
      download(url, tmp_path / "ETTh1.csv", "0" * 64, timeout=0.5)
  assert os.listdir(tmp_path) == []


def test_data_dir_resolution(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert default_data_dir() == tmp_path / "xdg" / "timedistill_jax"
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert default_data_dir() == Path.home() / ".cache" / "timedistill_jax"
  monkeypatch.delenv("TIMEDISTILL_DATA_DIR", raising=False)
  assert resolve_data_dir() == default_data_dir()
  monkeypatch.setenv("TIMEDISTILL_DATA_DIR", str(tmp_path / "env"))
  assert resolve_data_dir() == tmp_path / "env"
  assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
