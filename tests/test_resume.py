"""`nnictl resume` and `nnictl view` on a stopped experiment of this repository, under NNI 3.0:
the quickstart shrunk to four one-epoch trials on digits.

What NNI 3.0 does (docs/results.md, "Stop, resume, view"): a stopped experiment resumes where it
stopped, and the trial that was running when it stopped runs again; an experiment that had
reached maxTrialNumber resumes as DONE at once and starts nothing (microsoft/nni#5803) until
`nnictl update trialnum` raises the limit; `nnictl view` serves the stopped experiment read-only.
"""
import time

import pytest

from conftest import REPO
from nni_experiment import free_port, nni_experiment

pytestmark = pytest.mark.slow

COMMAND = 'python3 trial/main.py --dataset digits --width 8 --epochs 1 --log_frequency 0'


def statuses(experiment):
    return [job['status'] for job in experiment.api('trial-jobs')]


def wait_until(condition, timeout, poll=2.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'not within {timeout}s'
        time.sleep(poll)


def restart(experiment, command):
    """`nnictl resume|view ID` on a new port; the experiment's REST API answers there."""
    experiment.port = free_port()
    result = experiment.nnictl(command, experiment.id, '--port', str(experiment.port), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


def test_resume_continues_a_stopped_experiment_and_view_shows_it(tmp_path):
    with nni_experiment(REPO / 'nni_configs/quickstart.yml', tmp_path, max_trial_number=4,
                        trial_command=COMMAND) as experiment:
        wait_until(lambda: statuses(experiment).count('SUCCEEDED') >= 2, timeout=600)
        assert experiment.nnictl('stop', experiment.id).returncode == 0

        restart(experiment, 'resume')
        status = experiment.wait(timeout=900)
        assert status['status'] == 'DONE' and not status['errors'], status
        assert statuses(experiment).count('SUCCEEDED') == 4, statuses(experiment)
        assert experiment.nnictl('stop', experiment.id).returncode == 0

        # Resumed at maxTrialNumber: DONE at once, nothing new, until the limit is raised.
        restart(experiment, 'resume')
        assert experiment.wait(timeout=120)['status'] == 'DONE'
        assert statuses(experiment).count('SUCCEEDED') == 4
        result = experiment.nnictl('update', 'trialnum', experiment.id, '--value', '5')
        assert result.returncode == 0, result.stdout + result.stderr
        wait_until(lambda: statuses(experiment).count('SUCCEEDED') == 5, timeout=600)
        assert experiment.nnictl('stop', experiment.id).returncode == 0

        restart(experiment, 'view')
        assert statuses(experiment).count('SUCCEEDED') == 5
        assert experiment.api('check-status')['status'] == 'VIEWED'
