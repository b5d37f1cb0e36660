"""Stop a process group once its owner is gone, however the owner ended.

`metorigin ui` runs `dagster dev` in a process group of its own and stops that group when it exits
or is told to (SIGTERM, Ctrl-C). A `kill -9` or the OOM killer gives it no chance to: the kernel's
parent-death signal reaches `dagster dev` only, and its webserver, daemon and code servers stay,
holding the port and the store. So `metorigin ui` also starts this small process, outside the
group, with a pipe only the owner writes to as its standard input: the read returns at the owner's
end, whatever the cause, and the group is stopped (`python -m metorigin.cli.group_reaper PGID`).
Imports nothing heavy, so it costs a few megabytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_S = 10.0


def stop_group(group: int, grace_s: float = GRACE_S) -> None:
    """SIGTERM to every process of `group`, then SIGKILL to what is left after `grace_s`."""

    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        try:
            os.killpg(group, sig)
            while time.monotonic() < deadline:
                os.killpg(group, 0)  # raises once the group is empty
                time.sleep(0.2)
        except ProcessLookupError:
            return


STAND_DOWN = b"done\n"  # what the owner writes once it stopped the group itself


def start(group: int) -> subprocess.Popen:
    """The reaper of `group`; it acts when the returned process's stdin closes (this process ends)
    unless `stand_down` was called first."""

    return subprocess.Popen(
        [sys.executable, "-m", __name__, str(group)],
        stdin=subprocess.PIPE,
        start_new_session=True,  # not in the terminal's group: its Ctrl-C is the owner's to handle
    )


def stand_down(reaper: subprocess.Popen) -> None:
    """The owner stopped the group itself: the reaper exits without signalling anything (by then the
    group's number may belong to another group)."""
    reaper.stdin.write(STAND_DOWN)
    reaper.stdin.close()
    reaper.wait()


def main(argv: list[str]) -> int:
    group = int(argv[0])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    told = b""
    while chunk := os.read(0, 4096):  # b"" once the owner has ended, however it ended
        told += chunk
    if told != STAND_DOWN:
        stop_group(group)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
