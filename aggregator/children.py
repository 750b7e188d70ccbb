"""Children: the parse processes die with the process that started them.

A daemon killed with SIGKILL (or by the OOM killer) runs no clean-up, and its
``ProcessPoolExecutor`` children would live on under PID 1, about 110 MB each.
So each child asks Linux for a parent-death signal (``prctl(PR_SET_PDEATHSIG)``)
as it starts. The multiprocessing resource tracker then goes too: it exits when
the last holder of its pipe (the parent and these children) is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """A pool initializer: SIGKILL this process when its parent dies.

    The signal is tied to the thread that started the child, which is the event loop's
    (the pool starts its processes from ``submit``). If the parent died before the
    signal was set, the child is already an orphan and leaves at once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(0)
