import numpy as np
import pytest
import torch

from cifar_automl import data
from cifar_automl.config import ConfigError
from conftest import write_cifar_batches


def test_reads_official_python_batches_and_caches_them(tmp_path):
    written = write_cifar_batches(tmp_path, per_batch=20)
    train, test = data.load_cifar10(tmp_path)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (20, 3, 32, 32)
    # Row 0 of data_batch_1 is image 0: red plane first, CHW order.
    first = written['data_batch_1'][0][0]
    assert np.array_equal(train.images[0].numpy().reshape(-1), first)
    assert train.labels[:10].tolist() == list(range(10))
    assert (tmp_path / data.CIFAR10_CACHE).exists()
    # The cache is what a second trial reads, even with the batches gone.
    for f in (tmp_path / data.CIFAR10_DIR).iterdir():
        f.unlink()
    again, _ = data.load_cifar10(tmp_path)
    assert torch.equal(again.images, train.images)


def test_incomplete_cifar_directory_is_refused(tmp_path):
    write_cifar_batches(tmp_path)
    (tmp_path / data.CIFAR10_DIR / 'data_batch_3').unlink()
    with pytest.raises(ConfigError, match='data_batch_3 is missing'):
        data.load_cifar10(tmp_path)


def test_offline_download_fails_with_instructions(tmp_path, monkeypatch):
    # A closed local port stands in for the unreachable download server.
    monkeypatch.setattr(data, 'CIFAR10_URL', 'http://127.0.0.1:9/cifar-10-python.tar.gz')
    target = tmp_path / 'nowhere'
    with pytest.raises(ConfigError) as error:
        data.load_cifar10(target)
    message = str(error.value)
    assert str(target) in message and 'cifar-10-python.tar.gz' in message and 'cifar-10-batches-py' in message
    assert not target.exists(), 'a mistyped --data_dir is left behind, empty but for a lock file'
    existing = tmp_path / 'mine'
    existing.mkdir()
    with pytest.raises(ConfigError):
        data.load_cifar10(existing)
    assert existing.is_dir(), "the user's own directory is removed"


def test_validation_split_is_class_balanced_seeded_and_disjoint():
    images = torch.arange(1000, dtype=torch.int64).view(-1, 1, 1, 1).expand(-1, 3, 32, 32)
    split = data.Split(images, torch.arange(1000) % 10)
    kept, held = data.balanced_split(split, 100, 10, seed=3, source='--val_size')
    assert len(held) == 100 and len(kept) == 900
    assert torch.bincount(held.labels).tolist() == [10] * 10
    assert set(held.images[:, 0, 0, 0].tolist()).isdisjoint(kept.images[:, 0, 0, 0].tolist())
    _, again = data.balanced_split(split, 100, 10, seed=3, source='--val_size')
    _, other = data.balanced_split(split, 100, 10, seed=4, source='--val_size')
    assert torch.equal(again.images, held.images) and not torch.equal(other.images, held.images)


def test_digits_are_real_3x32x32_images_with_default_splits():
    loaded = data.load_dataset('digits')
    assert loaded.train.images.shape[1:] == (3, 32, 32)
    assert (len(loaded.train), len(loaded.val), len(loaded.test)) == (1200, 300, 297)
    assert loaded.train.images.float().std() > 30  # strokes, not blank images


@pytest.mark.parametrize('val_size', [0, 5000])
def test_impossible_validation_size_is_refused(val_size):
    with pytest.raises(ConfigError, match='--val_size'):
        data.load_dataset('digits', val_size=val_size)


def test_archive_placed_by_hand_is_checked_and_extracted_without_network(tmp_path, monkeypatch):
    import hashlib
    import tarfile
    write_cifar_batches(tmp_path / 'made')
    archive = tmp_path / 'data' / data.CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(tmp_path / 'made' / data.CIFAR10_DIR, arcname=data.CIFAR10_DIR)
    # The official archive's md5 is replaced by this one's; the URL leads nowhere.
    monkeypatch.setattr(data, 'CIFAR10_MD5', hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(data, 'CIFAR10_URL', 'http://127.0.0.1:9/cifar-10-python.tar.gz')
    train, test = data.load_cifar10(archive.parent)
    assert len(train) == 100 and len(test) == 20


@pytest.mark.parametrize('subset', [41, 500])
def test_subset_has_exactly_the_images_asked_for_balanced(subset):
    train = data.load_dataset('digits', subset=subset).train
    assert len(train) == subset
    assert torch.bincount(train.labels).max() - torch.bincount(train.labels).min() <= 1


def test_unreadable_cache_is_rebuilt_from_the_batches_with_a_notice(tmp_path, capsys):
    write_cifar_batches(tmp_path)
    train, _ = data.load_cifar10(tmp_path)
    cache = tmp_path / data.CIFAR10_CACHE
    cache.write_bytes(cache.read_bytes()[:len(cache.read_bytes()) // 2])  # a partial copy
    capsys.readouterr()
    again, _ = data.load_cifar10(tmp_path)
    assert torch.equal(again.images, train.images)
    notice = capsys.readouterr().out.splitlines()
    assert len(notice) == 1 and notice[0].startswith(f'notice: {cache} is unreadable') and 'rebuilding' in notice[0]
    data.load_cifar10(tmp_path)  # the rebuilt cache reads without a word
    assert capsys.readouterr().out == ''


def test_truncated_batch_is_an_error_naming_the_file_and_how_to_restore_it(tmp_path, capsys):
    from cifar_automl import trial
    write_cifar_batches(tmp_path)
    batch = tmp_path / data.CIFAR10_DIR / 'data_batch_3'
    batch.write_bytes(batch.read_bytes()[:1000])
    assert trial.main(['--data_dir', str(tmp_path), '--epochs', '1', '--output_dir', str(tmp_path / 'out')]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f'error: {batch} is damaged or incomplete') and error.count('\n') == 1
    assert f'delete {batch.parent} and run again' in error and 'tar xzf cifar-10-python.tar.gz' in error


def test_trials_starting_at_once_on_a_fresh_data_dir_share_one_extraction_and_cache(tmp_path):
    """NNI starts trialConcurrency trials together on a DATA_DIR holding only the archive. The first
    to extract creates cifar-10-batches-py before its files are complete (slowed down here): the
    others must wait for it rather than read half-extracted batches."""
    import hashlib
    import subprocess
    import sys
    import tarfile
    from conftest import REPO
    write_cifar_batches(tmp_path / 'made')
    archive = tmp_path / 'data' / data.CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(tmp_path / 'made' / data.CIFAR10_DIR, arcname=data.CIFAR10_DIR)
    load = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from cifar_automl import data
data.CIFAR10_MD5, data.CIFAR10_URL = {hashlib.md5(archive.read_bytes()).hexdigest()!r}, 'http://127.0.0.1:9/none'
extract = data.download_cifar10
def slow_extract(data_dir):
    (data_dir / data.CIFAR10_DIR).mkdir()
    time.sleep(5)
    extract(data_dir)
data.download_cifar10 = slow_extract
train, test = data.load_cifar10({str(archive.parent)!r})
print(len(train), int(train.images.sum()), int(test.images.sum()))
"""
    processes = [subprocess.Popen([sys.executable, '-c', load], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    results = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err for _, err in results]
    assert len({out for out, _ in results}) == 1 and results[0][0].split()[0] == '100'
    assert sorted(p.name for p in archive.parent.iterdir()) == sorted(
        [data.CIFAR10_ARCHIVE, data.CIFAR10_DIR, data.CIFAR10_CACHE, data.CIFAR10_LOCK])  # no temporary files left
