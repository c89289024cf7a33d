import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cifar_automl.config import ConfigError  # noqa: E402
from cifar_automl.environment import require_working_nni_lock  # noqa: E402

# Tests must not see an NNI environment from the shell that started them.
for variable in ('NNI_PLATFORM', 'NNI_OUTPUT_DIR', 'NNI_TRIAL_JOB_ID', 'NNI_EXP_ID'):
    os.environ.pop(variable, None)


def pytest_sessionstart(session):
    """The NNI experiments and DARTS searches among the tests would hang, not fail, under a filelock
    that NNI 3.0's experiment lock cannot use: refuse the whole session at once instead."""
    try:
        require_working_nni_lock()
    except ConfigError as error:
        pytest.exit(f'error: {error}', returncode=2)


def fake_filelock(version):
    """What `import filelock` gives, as far as the filelock guard reads it: for sys.modules."""
    return types.SimpleNamespace(__version__=version, __file__='/x/filelock/__init__.py')


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """--threads sets torch's process-wide thread count: give the tests after a run in this process theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write_cifar_batches(root, per_batch=20, seed=0):
    """A small CIFAR-10 directory in the official "python version" layout: pickled dicts
    with b'data' (N, 3072) uint8 rows in CHW order and b'labels'."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / 'cifar-10-batches-py'
    folder.mkdir(parents=True)
    written = {}
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(per_batch)]
        with open(folder / name, 'wb') as f:
            pickle.dump({b'batch_label': name.encode(), b'labels': labels, b'data': data,
                         b'filenames': [b'x.png'] * per_batch}, f)
        written[name] = (data, labels)
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({b'label_names': [b'airplane'] * 10, b'num_cases_per_batch': per_batch}, f)
    return written


@pytest.fixture
def cifar_dir(tmp_path):
    write_cifar_batches(tmp_path)
    return tmp_path
