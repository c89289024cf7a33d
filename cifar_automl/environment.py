"""Which packages this Python imports and from where, and whether NNI 3.0's experiment lock works
with them: `python -m cifar_automl.environment` (exit 0, or 2 with an `error:` line).

NNI 3.0 registers every experiment in ~/nni-experiments/.experiment under a file lock,
`SimplePreemptiveLock` (nni/tools/nnictl/common_utils.py), a filelock.SoftFileLock subclass whose
`_acquire` records the lock it took in `self._lock_file_fd`. From filelock 3.12 on, filelock reads
that state from `self._context` instead, so NNI's lock never reports itself acquired and its caller
polls forever, silently (filelock logs the wait at DEBUG). `nnictl create` and the other nnictl
commands, `NasExperiment.run()` (the DARTS search) and the tests' experiments all take it. NNI 3.0
declares `filelock<3.12` and pip picks 3.11.0 for it, but an environment that already has a newer
filelock (a GPU image's own torch brings one; NNI laid over it on PYTHONPATH) hangs. Reproduced with
filelock 3.12.0 and 4.3.2 ahead of 3.11.0 on the path (docs/nni3-fixes.md).
"""
import contextlib
import importlib
import io
import os
import re
import sys
import warnings
from pathlib import Path

from .config import ArgumentParser, exit_status
from .errors import ConfigError

FIRST_FILELOCK_NNI_CANNOT_USE = (3, 12)
# Shown with the versions: what the trial, the search and NNI run on.
PACKAGES = ('torch', 'nni', 'filelock', 'pytorch_lightning')


def require_working_nni_lock():
    """Raise ConfigError, at once, where the imported filelock would make NNI 3.0's lock wait forever."""
    try:
        import filelock
    except ImportError as error:
        raise ConfigError(f'filelock cannot be imported ({error}); NNI needs it: pip install -r requirements.txt') \
            from None
    version = getattr(filelock, '__version__', '')
    if version_tuple(version) < FIRST_FILELOCK_NNI_CANNOT_USE:
        return
    where = Path(filelock.__file__).resolve().parent
    pythonpath = [Path(entry).resolve() for entry in os.environ.get('PYTHONPATH', '').split(os.pathsep) if entry]
    fix = (f'take {where.parent} off PYTHONPATH, or put a filelock<3.12 ahead of it there' if where.parent in pythonpath
           else 'pip install "filelock<3.12" into this Python (requirements.txt pins filelock==3.11.0)')
    raise ConfigError(
        f'filelock {version or "of unknown version"} (imported from {where}) breaks NNI 3.0: from filelock 3.12 on, '
        f'the lock NNI takes on its experiment list never reports itself acquired, so nnictl and the DARTS search '
        f'would wait forever. Fix: {fix}; then check with python -m cifar_automl.environment (docs/nni3-fixes.md)')


def import_nni_nas():
    """Import NNI's NAS modules without their noise: NNI warns that some torch classes are "not a
    nn.Module", and gym (which NNI's PolicyBasedRL imports through tianshou) prints to stderr that it
    is unmaintained. Neither is the user's to fix."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter('ignore', RuntimeWarning)
        import nni.nas.evaluator.pytorch  # noqa: F401
        import nni.nas.experiment  # noqa: F401
        import nni.nas.hub.pytorch  # noqa: F401
        import nni.nas.strategy  # noqa: F401


def version_tuple(version):
    """(3, 11) for '3.11.0', (3, 12) for '3.12.1.dev3'; an unreadable version counts as too new."""
    match = re.match(r'(\d+)\.(\d+)', version)
    return (int(match.group(1)), int(match.group(2))) if match else (sys.maxsize,)


def describe_packages(names=PACKAGES):
    """One line per package: its version and the folder it was imported from (a package laid over
    an environment on PYTHONPATH shows up here, not in pip's list)."""
    lines = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as error:  # a broken install is what this is for: say so and go on
            lines.append(f'{name}: not importable ({type(error).__name__}: {error})')
            continue
        version = getattr(module, '__version__', '?')
        if name == 'torch':
            version += f', CUDA {module.version.cuda}' if module.version.cuda else ', CPU-only build'
        lines.append(f'{name} {version} ({Path(module.__file__).parent})')
    return lines


def main(argv=None):
    ArgumentParser(description='Print the versions of filelock, torch, NNI and Lightning and the folder each '
                   'is imported from; exit 2 where NNI 3.0\'s experiment lock would hang (docs/nni3-fixes.md).'
                   ).parse_args(argv)
    return exit_status(check)


def check():
    """Filelock first, so that a refusal comes before the seconds torch and NNI take to import."""
    print(f'python {sys.version.split()[0]} ({sys.executable})')
    print(*describe_packages(['filelock']))
    require_working_nni_lock()
    print(*describe_packages([name for name in PACKAGES if name != 'filelock']), sep='\n')
    print(f'ok: filelock is older than {".".join(map(str, FIRST_FILELOCK_NNI_CANNOT_USE))}, so NNI 3.0\'s experiment '
          f'lock works (nnictl create, the DARTS search)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
