"""``python -m tests.acceptance.crash_worker run …``: the ``apelier-worker`` command, except that the
process is killed (SIGKILL, as the kernel's OOM killer does) as soon as it starts decoding a photo
whose file name is in ``CRASH_ON`` (comma-separated): a photo that runs the box out of memory,
without needing the memory. Test-only; nothing in ``worker/`` knows about it."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from worker.commands.cli import main
from worker.imaging import decode as decoder

CRASH_ON = {name for name in os.environ.get("CRASH_ON", "").split(",") if name}
_decode = decoder.decode


def _crashing_decode(data: bytes, **kwargs: Any) -> Any:
    if kwargs.get("filename") in CRASH_ON:
        os.kill(os.getpid(), signal.SIGKILL)
    return _decode(data, **kwargs)


decoder.decode = _crashing_decode

if __name__ == "__main__":
    sys.exit(main())
