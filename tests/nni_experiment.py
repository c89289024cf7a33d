"""A real NNI experiment for a test: isolated, observable, always cleaned up.

`nnictl create` starts a Node.js manager, a tuner dispatcher and the trials, all of which
outlive the nnictl command. Each experiment here gets its own HOME (so nnictl's registry,
~/nni-experiments/.experiment, is its own and `nnictl stop ID` cannot touch anyone else's),
its own experimentWorkingDirectory, and a port free on 127.0.0.1. Every process it starts
inherits that HOME, which is how `leftover_processes` finds them to prove none is left.

    with nni_experiment(REPO / 'nni_configs/quickstart.yml', tmp_path) as experiment:
        status = experiment.wait(timeout=600)
        jobs = experiment.api('trial-jobs')
"""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cifar_automl.environment import require_working_nni_lock

FINISHED = ('DONE', 'STOPPED', 'ERROR')  # check-status values after which nothing more runs
NNICTL = [sys.executable, '-m', 'nni.tools.nnictl.nnictl']


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def processes_with_env(name, value):
    """Ids of the processes (this one aside) started with NAME=VALUE in their environment: every process
    started below one that had it, unless something cleared it, wherever its process group or session."""
    marker = b'\0' + f'{name}={value}'.encode() + b'\0'
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in b'\0' + (entry / 'environ').read_bytes() + b'\0':
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def isolated_config(config_path, working_directory, destination, **overrides):
    """The config as NNI's own classes read it (paths made absolute against the config's folder),
    with the experiment's files redirected to `working_directory` and any `overrides` of
    ExperimentConfig fields (max_trial_number=3). JSON is YAML."""
    from nni.experiment.config import ExperimentConfig
    config = ExperimentConfig.load(str(config_path))
    config.experiment_working_directory = str(working_directory)
    for name, value in overrides.items():
        if not hasattr(config, name):
            raise AttributeError(f'ExperimentConfig has no field {name!r}')
        setattr(config, name, value)
    Path(destination).write_text(json.dumps(config.json(), indent=2))
    return destination


class Experiment:
    def __init__(self, root):
        self.root = Path(root)
        self.home = self.root / 'home'
        self.working_directory = self.root / 'experiments'
        self.port = None
        self.id = None

    @property
    def env(self):
        return {**os.environ, 'HOME': str(self.home)}

    @property
    def url(self):
        return f'http://127.0.0.1:{self.port}'

    @property
    def directory(self):
        """Where NNI keeps this experiment: db/nni.sqlite, logs, the trials' output directories."""
        return self.working_directory / self.id

    def nnictl(self, *args, timeout=120):
        return subprocess.run(NNICTL + list(args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, config_path, **overrides):
        require_working_nni_lock()  # else `nnictl create` waits forever on NNI's experiment lock
        self.home.mkdir(parents=True, exist_ok=True)
        config = isolated_config(config_path, self.working_directory, self.root / 'config.yml', **overrides)
        self.port = free_port()
        result = self.nnictl('create', '--config', str(config), '--port', str(self.port))
        match = re.search(r'Experiment ID: (?:\x1b\[[0-9;]*m)*(\w+)', result.stdout)
        if match:
            self.id = match.group(1)
        if result.returncode != 0 or not match:
            raise RuntimeError(f'nnictl create failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')

    def api(self, path):
        """GET /api/v1/nni/<path> of the experiment's REST server: what the WebUI shows."""
        with urllib.request.urlopen(f'{self.url}/api/v1/nni/{path}', timeout=30) as response:
            return json.load(response)

    def wait(self, timeout, poll=2.0):
        """Wait until the experiment has finished; returns its check-status answer."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.api('check-status')
            if status['status'] in FINISHED:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f'experiment {self.id} still {status["status"]} after {timeout}s')
            time.sleep(poll)

    def leftover_processes(self):
        """Process ids running with this experiment's HOME (manager, dispatcher, trials)."""
        return processes_with_env('HOME', str(self.home))

    def stop(self, grace=30):
        """`nnictl stop ID`, then wait for every process of the experiment to exit. Returns the
        ids of those that did not and had to be killed (a test asserts there were none)."""
        if self.id:
            self.nnictl('stop', self.id)
        deadline = time.monotonic() + grace
        while self.leftover_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        stuck = self.leftover_processes()
        for pid in stuck:  # ours: they carry this experiment's private HOME
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return stuck


@contextlib.contextmanager
def nni_experiment(config_path, root, **overrides):
    """Start an experiment from `config_path` under `root`; stop it by id on the way out, whatever
    happened, and fail if any of its processes had to be killed."""
    experiment = Experiment(root)
    try:
        experiment.start(config_path, **overrides)
        yield experiment
    finally:
        stuck = experiment.stop()
        assert not stuck, f'experiment {experiment.id}: processes {stuck} outlived nnictl stop'
