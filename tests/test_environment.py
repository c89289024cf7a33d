"""A filelock that NNI 3.0's experiment lock cannot use (3.12 and later: it then waits forever, silently)
is refused at once, naming that filelock and the fix, wherever this repository starts NNI machinery
(cifar_automl/environment.py). The newer filelock is simulated: a package of that version put first
on the path of a fresh process, as a GPU image's own filelock or one laid over on PYTHONPATH would be."""
import os
import subprocess
import sys
import time

import pytest

from cifar_automl import environment
from cifar_automl.config import ConfigError
from conftest import REPO, fake_filelock
from nni_experiment import Experiment

REFUSAL = 'error: filelock 3.12.0 (imported from {}) breaks NNI 3.0: '


@pytest.fixture
def new_filelock(tmp_path):
    """A folder holding a `filelock` package of version 3.12.0, to put first on PYTHONPATH."""
    package = tmp_path / 'site' / 'filelock'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text("__version__ = '3.12.0'\n")
    return package.parent


def run_with(pythonpath, *args):
    """(exit status, stdout, stderr, seconds) of `python ARGS` in the repository root."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, 'PYTHONPATH': str(pythonpath)})
    return result.returncode, result.stdout, result.stderr, time.perf_counter() - start


@pytest.mark.parametrize('version, refused', [('3.11.0', False), ('3.8.2', False), ('3.12.0', True),
                                              ('3.12.1.dev3', True), ('4.3.2', True), ('', True)])
def test_filelock_3_12_and_later_or_of_no_version_is_refused(version, refused, monkeypatch):
    monkeypatch.setitem(sys.modules, 'filelock', fake_filelock(version))
    if refused:
        with pytest.raises(ConfigError, match=r'filelock .* \(imported from /x/filelock\) breaks NNI 3.0: .* Fix: pip '
                                              r'install "filelock<3.12" into this Python \(requirements.txt pins '
                                              r'filelock==3.11.0\)'):
            environment.require_working_nni_lock()
    else:
        environment.require_working_nni_lock()


def test_the_darts_search_refuses_a_new_filelock_in_seconds_before_any_work(new_filelock, tmp_path):
    """On a GPU machine the search printed its setup line and then nothing for 4 minutes (docs/gpu.md)."""
    status, out, err, seconds = run_with(new_filelock, 'nas/search_darts.py', '--dataset', 'digits', '--subset', 256,
                                         '--width', 4, '--num_cells', 3, '--epochs', 1, '--batch_size', 32,
                                         '--output_dir', tmp_path / 'search')
    assert status == 2 and out == '' and err.count('\n') == 1, err
    assert err.startswith(REFUSAL.format(new_filelock / 'filelock'))
    assert f'Fix: take {new_filelock} off PYTHONPATH, or put a filelock<3.12 ahead of it there' in err
    assert seconds < 10 and not (tmp_path / 'search').exists()


def test_the_environment_check_before_nnictl_create_names_the_filelock(new_filelock):
    status, out, err, seconds = run_with(new_filelock, '-m', 'cifar_automl.environment')
    assert status == 2 and seconds < 10
    assert f'filelock 3.12.0 ({new_filelock / "filelock"})' in out.splitlines()
    assert err.startswith(REFUSAL.format(new_filelock / 'filelock'))


def test_the_environment_check_passes_here(capsys):
    assert environment.check() == 0
    out = capsys.readouterr().out
    assert out.startswith('python 3.') and '\nfilelock 3.11.0 (' in out and '\nnni 3.0 (' in out
    assert out.endswith("ok: filelock is older than 3.12, so NNI 3.0's experiment lock works (nnictl create, the "
                        "DARTS search)\n")


def test_the_tests_experiment_launcher_refuses_before_nnictl_create(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'filelock', fake_filelock('4.3.2'))
    experiment = Experiment(tmp_path)
    with pytest.raises(ConfigError, match='filelock 4.3.2'):
        experiment.start(REPO / 'nni_configs/quickstart.yml')
    assert experiment.id is None and not experiment.home.exists()


def test_the_test_session_refuses_a_new_filelock(new_filelock):
    status, out, err, seconds = run_with(new_filelock, '-m', 'pytest', 'tests/test_environment.py', '-k',
                                         'test_filelock_3_12_and_later', '-p', 'no:cacheprovider')
    assert status == 2 and seconds < 10, out + err
    assert REFUSAL.format(new_filelock / 'filelock') in out + err
