"""Atomic writes: a reader (or a killed run) sees the old file or the new one, never half of one.
And a lock for work that processes starting at once must do only once."""
import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should read like any other file
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_save(obj, path):
    """torch.save to `path` atomically."""
    _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj, path):
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=2) + '\n').encode()))


def atomic_write_text(text, path):
    _atomic(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(data, path):
    _atomic(path, lambda f: f.write(data))


@contextlib.contextmanager
def exclusive_lock(path):
    """Hold an advisory lock on `path` (created if absent) for the `with` block: one process at a
    time, the others wait. The kernel releases it when its holder exits, killed or not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
