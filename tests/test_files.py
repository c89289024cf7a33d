import json
import os
import stat

import pytest

from cifar_automl.files import atomic_write_json


def test_atomic_write_replaces_whole_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / 'sub' / 'metrics.json'
    atomic_write_json({'a': 1}, path)
    atomic_write_json({'a': 2}, path)
    assert json.loads(path.read_text()) == {'a': 2}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ['metrics.json']  # no temporary left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / 'metrics.json'
    atomic_write_json({'a': 1}, path)
    with pytest.raises(TypeError):
        atomic_write_json({'a': object()}, path)
    assert json.loads(path.read_text()) == {'a': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['metrics.json']
