"""One writer session per store.

Two `metorigin run`s on one store at once (another seed, another study) both succeeded, and the
store held whichever finished last. A session (a CLI run, `forget`, or a run the daemon launched
for the steps that write the whole store: ingest, the dbt build, the study) holds the store's
lease; another session waits, told who holds it, or fails at once when asked not to wait.

The lease is a lock on a file in the store (`fcntl.flock`), so it is released when its process
ends, however it ends. It is re-entrant within a process: the CLI holds it for its whole session
and the steps it runs in-process take it again without waiting for themselves. Lock files on
network file systems are unreliable; a cluster deployment serialises writers with Dagster's run
queue instead (see the README).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from metorigin.core.errors import MetoriginError

LEASE_FILE = ".session.lock"
TELL_EVERY_S = 30.0  # a waiting session says again whom it waits for
_held: dict[Path, int] = {}  # lease file -> depth, for this process
_guard = threading.Lock()


class StoreBusy(MetoriginError):
    """Another session holds the store and the caller asked not to wait."""


def holder_of(root: Path) -> str:
    """Who holds the store's lease (as recorded by the holder), or 'nobody'."""
    path = Path(root) / LEASE_FILE
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "nobody"
    return f"{info['holder']} (pid {info['pid']} on {info['host']}, since {info['since']})"


@contextmanager
def store_session(
    root: Path, holder: str, wait: bool = True, on_wait: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Hold the store's writer lease for the block.

    `wait=False` raises StoreBusy naming the holder; otherwise waits (in `time.sleep`, so Ctrl-C
    and SIGTERM end the wait at once), telling `on_wait` who holds it, and again every
    `TELL_EVERY_S` with how long it has waited."""
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LEASE_FILE
    with _guard:
        if _held.get(path):
            _held[path] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                _held[path] -= 1
        return
    with open(path, "a+") as lock:
        start = time.monotonic()
        told = -TELL_EVERY_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                message = f"the store {root} is in use by {holder_of(root)}"
                if not wait:
                    raise StoreBusy(f"{message}. Fix: wait for it (run without --no-wait), or use another --store")
                waited = time.monotonic() - start
                if waited - told >= TELL_EVERY_S:
                    on_wait(f"waiting{f' {waited:.0f} s' if waited >= 1 else ''}: {message}")
                    told = waited
                time.sleep(0.5)
        try:
            lock.seek(0)
            lock.truncate()
            info = {
                "holder": holder,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            lock.write(json.dumps(info))
            lock.flush()
            with _guard:
                _held[path] = 1
            yield
        finally:
            with _guard:
                _held.pop(path, None)
            lock.seek(0)
            lock.truncate()
            lock.flush()
            fcntl.flock(lock, fcntl.LOCK_UN)
