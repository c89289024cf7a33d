"""The README's main job, for real: `nnictl create --config nni_configs/quickstart.yml`, checked
through the REST API the WebUI reads, then `python -m cifar_automl.report` on the live experiment
(by id) and on its directory once stopped. Three of the quickstart's trials keep it to a few
minutes on 2 cores; the experiment is stopped by id and no process of it may be left.
"""
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_automl.config import resolve
from nni_experiment import nni_experiment

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / 'nni_configs' / 'quickstart.yml'
TRIALS = 3
CHANCE = 10.0  # digits: ten classes, accuracies in percent


def decode(data):
    """The REST API's metric `data`: the reported dict, JSON-encoded twice."""
    return json.loads(json.loads(data))


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def run_report(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'cifar_automl.report', *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_quickstart_experiment_end_to_end(tmp_path):
    from nni.experiment.config import ExperimentConfig
    trial_command = ExperimentConfig.load(str(QUICKSTART)).trial_command
    epochs = resolve(shlex.split(trial_command)[2:]).epochs

    with nni_experiment(QUICKSTART, tmp_path, max_trial_number=TRIALS) as experiment:
        assert experiment.wait(timeout=1200) == {'status': 'DONE', 'errors': []}
        jobs = experiment.api('trial-jobs')
        metrics = experiment.api('metric-data')

        assert len(jobs) == TRIALS
        finals = {}
        for job in jobs:
            assert job['status'] == 'SUCCEEDED', job
            own = [m for m in metrics if m['trialJobId'] == job['trialJobId']]
            final = [decode(m['data']) for m in own if m['type'] == 'FINAL']
            periodical = sorted((m for m in own if m['type'] == 'PERIODICAL'), key=lambda m: m['sequence'])
            assert len(final) == 1, f'{job["trialJobId"]}: one final result'
            finals[job['trialJobId']] = final[0]
            # One intermediate result per epoch run (a dead trial may stop before `epochs`).
            assert 1 <= final[0]['epochs_run'] <= epochs
            assert [decode(m['data'])['epoch'] for m in periodical] == list(range(1, final[0]['epochs_run'] + 1))
            assert all(0 <= decode(m['data'])['default'] <= 100 for m in periodical)
        best_id = max(finals, key=lambda trial: finals[trial]['default'])
        assert finals[best_id]['default'] > 5 * CHANCE, finals
        assert finals[best_id]['epochs_run'] == epochs

        live = run_report(experiment.id, '--out', str(tmp_path / 'live'), env=experiment.env)
        assert live.returncode == 0, live.stderr
        assert experiment.url in (tmp_path / 'live' / 'report.md').read_text(), 'read through the REST API'
    assert experiment.leftover_processes() == []

    stopped = run_report(str(experiment.directory), '--out', str(tmp_path / 'stopped'))
    assert stopped.returncode == 0, stopped.stderr
    out = tmp_path / 'stopped'
    rows = read_csv(out / 'trials.csv')
    assert rows == read_csv(tmp_path / 'live' / 'trials.csv'), 'REST API and db/nni.sqlite agree'
    assert {row['id'] for row in rows} == set(finals)
    assert rows[0]['id'] == best_id
    for row in rows:
        assert row['status'] == 'SUCCEEDED'
        assert float(row['default']) == pytest.approx(finals[row['id']]['default'])
        assert float(row['test_acc']) == pytest.approx(finals[row['id']]['test_acc'])
        assert int(row['intermediate_results']) == finals[row['id']]['epochs_run']

    command = shlex.split((out / 'best_command.txt').read_text())
    assert command[1] == 'trial/main.py'
    cfg = resolve(command[2:])
    best_job = next(job for job in jobs if job['trialJobId'] == best_id)
    for name, value in json.loads(best_job['hyperParameters'][0])['parameters'].items():
        assert getattr(cfg, name) == value, name
    assert cfg.dataset == 'digits' and cfg.epochs == epochs

    markdown = (out / 'report.md').read_text()
    assert f'`{best_id}`' in markdown.split('## Trials, best first')[1].splitlines()[4]
    for png in ('metric_per_trial.png', 'intermediate.png', 'parameters.png'):
        assert (out / png).read_bytes().startswith(b'\x89PNG'), png
