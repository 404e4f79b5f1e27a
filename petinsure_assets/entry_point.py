"""How every command of the project ends: with its own exit status, whatever the interpreter's
teardown would do.

pyarrow's C++ thread pools can abort the interpreter while it shuts down, after all the work is
done ("terminate called without an active exception", SIGABRT; apache/arrow#34314, open; about 1
run in 850 here). So an entry point finishes its work, flushes stdout, stderr and the logging
handlers, and leaves with `os._exit`: no atexit handlers, finalizers or thread joins run after it.
Whatever must be cleaned up is cleaned up before (context managers, try/finally), never at exit.

    if __name__ == "__main__":
        run_and_exit(main)      # main() returns the status (None = 0) or raises SystemExit

Standard library only: the snapshot client's command uses it without Dagster.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C


def run_and_exit(main: Callable[[], int | None]) -> NoReturn:
    """Run `main` and end the process with its status, as the interpreter would report it: the
    return value (None = 0), a SystemExit's code (a message goes to stderr, status 1), 130 on
    Ctrl-C, 1 with the traceback on stderr for any other exception."""
    try:
        status = _status(main())
    except SystemExit as e:
        status = _status(e.code)
    except KeyboardInterrupt:
        status = INTERRUPTED
    except BaseException:  # noqa: BLE001 - reported like the interpreter would, then exit 1
        traceback.print_exc()
        status = 1
    logging.shutdown()  # flushes and closes every handler
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be said
            pass
    os._exit(status)


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
