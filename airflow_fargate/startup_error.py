"""A configuration error at scheduler start is printed once, without our internals' traceback.

What Airflow (3.3 and 2.11) does with an exception from ``executor.start()``: the scheduler logs
it with its traceback and re-raises it; nothing catches it after that, so Python prints it, with
the whole traceback, a second time as the process dies. Raising ``SystemExit`` instead would
print nothing but is worse: Airflow takes it for ^C or SIGTERM, marks the scheduler job
successful and exits 0.

So the error is still raised (the scheduler job fails and the process exits 1), but with its
traceback cut to ``start()``, so the scheduler's one log entry is a few lines and the message.
The process's final print of that same exception is replaced by one line pointing at that entry;
any other uncaught exception is printed as before (Airflow installs such a hook too, for JSON
logs). The hook is process-wide, as ``sys.excepthook`` is, and only ever acts on an exception
this module marked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from airflow_fargate.errors import FargateConfigError

_MARK = "_fargate_logged_at_start"
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
POINTER = "The scheduler stopped on the FargateExecutor configuration error it logged above."


def raised_at_start(err: FargateConfigError) -> FargateConfigError:
    """``err`` ready to be raised out of start(): traceback dropped (the raise adds start()'s and
    the scheduler's frames), marked so that the process's dying print is the one-line pointer."""
    setattr(err, _MARK, True)
    if not getattr(sys.excepthook, _MARK, False):
        sys.excepthook = _pointer_hook(sys.excepthook)
    return err.with_traceback(None)


def _pointer_hook(previous: ExceptHook) -> ExceptHook:
    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if getattr(exc, _MARK, False):
            print(POINTER, file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    setattr(hook, _MARK, True)
    return hook
