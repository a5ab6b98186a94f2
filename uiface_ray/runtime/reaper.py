"""The embedded Ray's reaper: a tiny process that ends the session's processes when its driver dies.

On Linux, Ray ties the processes a driver starts itself (GCS, raylet, dashboard, monitors) to the
driver with a parent-death signal, but not the raylet's own children.  After ``kill -9`` of a
driver, its dashboard agent and runtime-env agent see their raylet gone, try to report that to the
GCS, which died too, and wait for it for 60 s (``publish_error_to_driver``'s fixed timeout; measured
on Ray 2.60: both agents were alive 60 s after the driver).  Ray has no setting for that wait.

So every embedded session starts this reaper first (:func:`start_reaper`):

- It runs in its own session (``setsid``): Ctrl-C in the terminal, a ``kill`` of the job's
  process group or a closed terminal do not reach it.  It imports only the standard library.
- It reads a pipe whose other end only the driver holds, and checks every second that the driver
  is still its parent.
- When the driver says stop (:meth:`Reaper.stop`, after ``ray.shutdown``) or dies (the pipe's end
  of file without that word, or the reaper handed to another parent), it ends every process of
  this user that belongs to the session (:func:`session_processes`: a file open in the session's
  private folder, or the session's marker :data:`MARKER` in its environment, set for Ray's
  processes only, never the driver's): SIGTERM, then SIGKILL 2 s later.
- When the driver died, it also removes the session's private folder (under ``RAY_TMPDIR``: only
  the token), so a killed job leaves nothing in the temporary folder.

Processes are found through ``/proc`` (Linux) by what ties them to the session's folder, never by
name.  Elsewhere the reaper only removes the folder.  A reaper killed itself (``kill -9`` of it) is
covered by the next embedded session, which removes the folders whose driver is gone.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["MARKER", "Reaper", "end_session", "session_processes", "start_reaper"]

MARKER = "UIFACE_RAY_SESSION"  # in Ray's processes' environment: the session's private folder
TERM_GRACE_S = 2.0
SWEEP_LIMIT_S = 15.0
STOP = b"stop\n"  # the driver's word for "I shut the session down myself"


class Reaper:
    """The driver's handle on its reaper process."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def stop(self, timeout_s: float = SWEEP_LIMIT_S + 5) -> None:
        """Close the pipe (the reaper ends what is left of the session's processes, and exits) and
        wait for it."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(STOP)
                self.proc.stdin.close()
            except OSError:  # the reaper is gone already
                pass
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_reaper(folder: Path, keep: bool) -> Reaper:
    """Start the reaper of the session whose private folder is ``folder`` (``keep``: Ray's files stay
    there for the user, only the token is removed when the driver dies)."""
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", __file__, str(folder), "keep" if keep else "remove", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    return Reaper(proc)


def session_processes(folder: str, driver: int | None = None) -> list[int]:
    """The pids of this user's processes that belong to the session of ``folder`` (Linux), the
    driver excepted: those with a file open for writing inside the folder (every Ray process writes
    its logs there; a reader such as ``tail -f`` is not one of them), or whose environment holds
    ``MARKER=folder`` (a process that renames itself, as Ray's agents and workers do, may overwrite
    its environment block: its open files are what finds it)."""
    if not Path("/proc/self/fd").exists():
        return []
    marker, inside = f"{MARKER}={folder}".encode(), folder.rstrip("/") + "/"
    skip, uid = {os.getpid(), driver}, os.getuid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0") or _writes_in(entry, inside):
                found.append(int(entry.name))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def _writes_in(proc: Path, inside: str) -> bool:
    """Whether ``proc`` holds a file under ``inside`` open for writing."""
    for fd in (proc / "fd").iterdir():
        try:
            if not os.readlink(fd).startswith(inside):
                continue
            flags = next(ln for ln in (proc / "fdinfo" / fd.name).read_text().splitlines() if ln.startswith("flags:"))
            if int(flags.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                return True
        except (OSError, StopIteration, ValueError):
            continue
    return False


def end_session(folder: str, driver: int) -> None:
    """SIGTERM every process of the session, SIGKILL what is left after :data:`TERM_GRACE_S`; again
    until none is found (for at most :data:`SWEEP_LIMIT_S`)."""
    deadline = time.monotonic() + SWEEP_LIMIT_S
    sig = signal.SIGTERM
    while (pids := session_processes(folder, driver)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        until = time.monotonic() + TERM_GRACE_S
        while time.monotonic() < until and set(pids) & set(session_processes(folder, driver)):
            time.sleep(0.1)
        sig = signal.SIGKILL


def _remove(folder: str, keep: bool) -> None:
    if keep:
        Path(folder, "auth_token").unlink(missing_ok=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    folder, mode, driver = argv[0], argv[1], int(argv[2])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the driver's pipe, or its death, ends the reaper
    fd, said = sys.stdin.fileno(), b""
    died = True  # unless the driver says stop before its end of the pipe closes
    while os.getppid() == driver:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        chunk = os.read(fd, 64)
        said += chunk
        if STOP in said or not chunk:  # the driver's stop, or the end of file of its death
            died = STOP not in said
            break
    if died:
        time.sleep(0.5)  # let Ray's own parent-death signals land first
    end_session(folder, driver)
    if died:
        _remove(folder, mode == "keep")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
