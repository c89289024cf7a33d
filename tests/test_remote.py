"""nni_configs/remote.yml for real: an OpenSSH server on 127.0.0.1 (its own host key, config and
port, a key generated here), and a tiny experiment through NNI's remote training service to it.

NNI packs the repository (honouring .nniignore), uploads it over SFTP, starts its trial keeper
over SSH with the machine's pythonPath, and the trials report back to nniManagerIp. The SSH
sessions get a HOME of their own (authorized_keys environment=), so the "remote" side of the
experiment lives under tmp too, and PIP_NO_INDEX=1: NNI 3.0 runs `pip install nni --upgrade` on
every machine at start, which without an index (an offline GPU server) keeps what is installed.
"""
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nni.experiment.config import ExperimentConfig

from conftest import REPO
from nni_experiment import free_port, nni_experiment

pytestmark = pytest.mark.slow

SSHD = shutil.which('sshd') or '/usr/sbin/sshd'
TRIALS = 2


def install_sshd():
    """CI runs as root on Debian: install the server if it is missing. Elsewhere, say what to do."""
    if Path(SSHD).exists():
        return
    if os.geteuid() == 0 and shutil.which('apt-get'):
        subprocess.run(['apt-get', 'install', '-y', '--no-install-recommends', 'openssh-server'],
                       env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}, capture_output=True, timeout=600)
    if not Path(SSHD).exists():
        pytest.skip('sshd cannot run here: openssh-server is not installed (apt-get install openssh-server)')


def keygen(path):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'cifar-automl-test', '-f', str(path)],
                   check=True, timeout=60)
    return path


def descendants(pid):
    """Process ids whose parent chain leads to `pid` (sshd's per-connection processes and sessions)."""
    parents = {}
    for entry in Path('/proc').iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@contextlib.contextmanager
def local_sshd(root, session_home):
    """sshd on a free port of 127.0.0.1 accepting one generated key; yields (port, key file)."""
    root.mkdir(parents=True)
    host_key = keygen(root / 'host_key')
    client_key = keygen(root / 'client_key')
    options = f'environment="HOME={session_home}",environment="PIP_NO_INDEX=1"'
    (root / 'authorized_keys').write_text(f'{options} {(root / "client_key.pub").read_text()}')
    port = free_port()
    (root / 'sshd_config').write_text('\n'.join([
        f'Port {port}', 'ListenAddress 127.0.0.1', f'HostKey {host_key}', f'PidFile {root / "sshd.pid"}',
        f'AuthorizedKeysFile {root / "authorized_keys"}', 'PubkeyAuthentication yes', 'PasswordAuthentication no',
        'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'PermitRootLogin prohibit-password',
        'PermitUserEnvironment yes', 'Subsystem sftp internal-sftp', 'LogLevel VERBOSE', '']))
    if os.geteuid() == 0:
        os.makedirs('/run/sshd', exist_ok=True)  # sshd's privilege-separation directory
    log = open(root / 'sshd.log', 'w')
    server = subprocess.Popen([SSHD, '-D', '-e', '-f', str(root / 'sshd_config')], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(('127.0.0.1', port)) == 0:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f'sshd cannot run here: {(root / "sshd.log").read_text()[-2000:]}')
            time.sleep(0.2)
        yield port, client_key
    finally:
        sessions = descendants(server.pid)
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        if server.poll() is None:
            server.kill()
            server.wait()
        for pid in sessions:  # started by our sshd, so ours
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        log.close()


def ssh_works(port, key, user):
    result = subprocess.run(['ssh', '-i', str(key), '-p', str(port), '-o', 'StrictHostKeyChecking=no',
                             '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', f'{user}@127.0.0.1',
                             'echo $HOME'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def localhost_config(port, key, user):
    """remote.yml as shipped, its placeholder machine replaced by the local sshd, and a tiny CPU
    budget: digits, two trials of two epochs, no trialGpuNumber (this machine has no GPU)."""
    config = ExperimentConfig.load(str(REPO / 'nni_configs/remote.yml'))
    service = config.training_service
    machine = service.machine_list[0]
    machine.host, machine.port, machine.user, machine.ssh_key_file = '127.0.0.1', port, user, str(key)
    machine.python_path = str(Path(sys.executable).parent)
    machine.max_trial_number_per_gpu = 1
    service.machine_list = [machine]
    service.nni_manager_ip = '127.0.0.1'
    return dict(training_service=service, trial_gpu_number=None, max_trial_number=TRIALS, trial_concurrency=1,
                max_experiment_duration='15m', search_space_file=str(REPO / 'search_spaces/quickstart_digits.json'),
                trial_command='python3 trial/main.py --dataset digits --width 16 --epochs 2 --log_frequency 0')


def test_remote_yml_runs_trials_over_ssh(tmp_path):
    install_sshd()
    user = getpass.getuser()
    with local_sshd(tmp_path / 'sshd', tmp_path / 'home') as (port, key):
        assert ssh_works(port, key, user) == str(tmp_path / 'home')
        overrides = localhost_config(port, key, user)
        with nni_experiment(REPO / 'nni_configs/remote.yml', tmp_path, **overrides) as experiment:
            status = experiment.wait(timeout=900)
            jobs = experiment.api('trial-jobs')
            assert status['status'] == 'DONE', (status, jobs)
            assert len(jobs) == TRIALS
            for job in jobs:
                assert job['status'] == 'SUCCEEDED', job
                assert job['finalMetricData'], job
            # The trials ran on the "remote" side: in the code NNI uploaded there, minus .nniignore.
            remote = tmp_path / 'home' / 'nni-experiments' / experiment.id
            uploaded = [path for path in remote.rglob('trial/main.py')]
            assert uploaded, f'no uploaded code under {remote}'
            code = uploaded[0].parent.parent
            assert (code / 'cifar_automl/trial.py').is_file()
            assert not (code / '.git').exists() and not (code / 'tests').exists()
            assert list(remote.rglob('metrics.json'))
