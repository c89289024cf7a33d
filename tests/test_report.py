"""`python -m cifar_automl.report` over a real NNI experiment, recorded in tests/data/report_experiment:
its db/nni.sqlite as NNI 3.0 wrote it, and the REST API's answers while it ran (rest/*.json).
Five random-search trials on digits, one of them failed (a batch larger than the training set).

Regenerate the recording (about 2 minutes on 2 cores): PYTHONPATH=. python tests/test_report.py --record
"""
import csv
import http.server
import json
import shlex
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from cifar_automl import report
from cifar_automl.results.load import decode_metric
from cifar_automl.config import resolve

FIXTURE = Path(__file__).resolve().parent / 'data' / 'report_experiment'
REST_ENDPOINTS = ('experiment', 'trial-jobs', 'metric-data')
PNGS = ('metric_per_trial.png', 'intermediate.png', 'parameters.png')


def finals_from_database(database):
    """trial id -> final metrics, read straight from NNI's tables (not through the report)."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT trialJobId, data FROM MetricData WHERE type = 'FINAL'").fetchall()
    return {trial: json.loads(json.loads(data)) for trial, data in rows}


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture
def experiment_dir(tmp_path):
    """A copy, as a user would copy an experiment back from a remote machine."""
    copy = tmp_path / 'copied-experiment'
    shutil.copytree(FIXTURE / 'db', copy / 'db')
    return copy


@pytest.fixture
def rest_url():
    """The recorded REST answers, served the way NNI's manager serves them."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.removeprefix('/api/v1/nni/')
            if name not in REST_ENDPOINTS:
                self.send_error(404)
                return
            body = (FIXTURE / 'rest' / f'{name}.json').read_bytes()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_directory_report_lists_every_trial_best_first(experiment_dir, tmp_path, capsys):
    out = tmp_path / 'results'
    assert report.main([str(experiment_dir), '--out', str(out)]) == 0
    finals = finals_from_database(experiment_dir / 'db' / 'nni.sqlite')
    rows = read_csv(out / 'trials.csv')

    assert len(rows) == 5
    assert sorted(row['status'] for row in rows) == ['FAILED'] + ['SUCCEEDED'] * 4
    assert list(rows[0])[:3] == ['trial', 'id', 'status']
    for column in ('initial_lr', 'optimizer', 'batch_size', 'momentum', 'default', 'test_acc',
                   'best_intermediate', 'intermediate_results', 'duration_s'):
        assert column in rows[0]
    succeeded = [row for row in rows if row['status'] == 'SUCCEEDED']
    assert rows[:4] == succeeded, 'trials with a final metric come first'
    metrics = [float(row['default']) for row in succeeded]
    assert metrics == sorted(metrics, reverse=True)
    for row in succeeded:
        assert float(row['default']) == pytest.approx(finals[row['id']]['default'])
        assert float(row['test_acc']) == pytest.approx(finals[row['id']]['test_acc'])
        assert int(row['intermediate_results']) == 2, 'one intermediate result per epoch'
        assert float(row['best_intermediate']) >= float(row['default']) - 1e-9
        assert float(row['duration_s']) > 0
        # NNI's nested choice: momentum is a parameter of the sgd choice only.
        assert (row['momentum'] != '') == (row['optimizer'] == 'sgd')
    failed = rows[-1]
    assert failed['batch_size'] == '4096' and failed['default'] == '' and failed['intermediate_results'] == '0'
    assert f'best: trial {rows[0]["trial"]} ({rows[0]["id"]})' in capsys.readouterr().out


def test_best_command_reruns_the_best_trial(experiment_dir, tmp_path):
    out = tmp_path / 'results'
    assert report.main([str(experiment_dir), '--out', str(out)]) == 0
    best = read_csv(out / 'trials.csv')[0]
    command = (out / 'best_command.txt').read_text().strip()
    words = shlex.split(command)
    assert words[:2] == ['python', 'trial/main.py']
    cfg = resolve(words[2:])
    assert cfg.dataset == 'digits' and cfg.epochs == 2, 'the experiment\'s fixed flags are kept'
    assert cfg.initial_lr == float(best['initial_lr'])
    assert cfg.optimizer == best['optimizer']
    assert cfg.batch_size == int(best['batch_size'])
    if best['momentum']:
        assert cfg.momentum == float(best['momentum'])


def test_markdown_table_and_plots(experiment_dir, tmp_path):
    out = tmp_path / 'results'
    assert report.main([str(experiment_dir), '--out', str(out)]) == 0
    rows = read_csv(out / 'trials.csv')
    markdown = (out / 'report.md').read_text()
    trials_section = markdown.split('## Trials, best first')[1].split('\n## ')[0]
    table = [line for line in trials_section.splitlines() if line.startswith('| ')]
    assert table[0].startswith('| rank | trial | id | status | initial_lr | optimizer | batch_size | momentum |')
    assert [line.split(' | ')[2] for line in table[1:]] == [f'`{row["id"]}`' for row in rows]
    assert table[1].startswith('| 1 | ')
    assert (out / 'best_command.txt').read_text().strip() in markdown
    from PIL import Image
    for name in PNGS:
        assert f']({name})' in markdown
        with Image.open(out / name) as image:
            assert image.format == 'PNG' and image.width > 400 and image.height > 250


def test_rest_api_and_database_give_the_same_trials(experiment_dir, rest_url, tmp_path):
    assert report.main([str(experiment_dir), '--out', str(tmp_path / 'from-db')]) == 0
    assert report.main(['--url', rest_url, '--out', str(tmp_path / 'from-rest')]) == 0
    assert read_csv(tmp_path / 'from-rest' / 'trials.csv') == read_csv(tmp_path / 'from-db' / 'trials.csv')
    assert (tmp_path / 'from-rest' / 'best_command.txt').read_text() == \
        (tmp_path / 'from-db' / 'best_command.txt').read_text()


def register(home, experiment_id, **entry):
    """An entry in nnictl's experiment registry, as `nnictl create` writes it."""
    registry = home / 'nni-experiments' / '.experiment'
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps({experiment_id: {'id': experiment_id, 'prefixUrl': None, **entry}}))


def test_experiment_id_finds_a_running_or_stopped_experiment(experiment_dir, rest_url, tmp_path, monkeypatch):
    experiment_id = json.loads((FIXTURE / 'rest' / 'experiment.json').read_text())['id']
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    port = int(rest_url.rsplit(':', 1)[1])
    register(tmp_path / 'home', experiment_id, status='RUNNING', port=port, logDir='/nonexistent')
    assert report.main([experiment_id, '--out', str(tmp_path / 'running')]) == 0
    assert rest_url in (tmp_path / 'running' / 'report.md').read_text()

    # Stopped: its REST server is gone, the database stays in <logDir>/<id>.
    experiment_dir.rename(tmp_path / experiment_id)
    register(tmp_path / 'home', experiment_id, status='STOPPED', port=1, logDir=str(tmp_path))
    assert report.main([experiment_id, '--out', str(tmp_path / 'stopped')]) == 0
    assert read_csv(tmp_path / 'stopped' / 'trials.csv') == read_csv(tmp_path / 'running' / 'trials.csv')


@pytest.mark.parametrize('argument, message', [
    ('nosuchid', "'nosuchid': not an experiment directory, and no experiment with this id"),
    ('{tmp}', 'no db/nni.sqlite here'),
    ('{tmp}/missing', 'no such directory'),
])
def test_bad_experiment_is_refused(argument, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HOME', str(tmp_path))
    out = tmp_path / 'results'
    assert report.main([argument.format(tmp=tmp_path), '--out', str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith('error: ') and message in error
    assert not out.exists()


def test_not_an_nni_database_is_refused(tmp_path, capsys):
    (tmp_path / 'db').mkdir()
    (tmp_path / 'db' / 'nni.sqlite').write_bytes(b'not sqlite at all' * 100)
    assert report.main([str(tmp_path), '--out', str(tmp_path / 'results')]) == 2
    assert 'not an NNI experiment database' in capsys.readouterr().err


def test_a_bare_number_result_is_the_default_metric():
    # nni.report_final_result(93.5) stores the number JSON-encoded twice, like a dict.
    assert decode_metric(json.dumps(json.dumps(93.5))) == {'default': 93.5}
    assert decode_metric(json.dumps(json.dumps({'default': 1.0, 'test_acc': 2.0}))) == \
        {'default': 1.0, 'test_acc': 2.0}


def record(root=Path('/tmp/report-fixture')):
    """Run the fixture's experiment for real and store its database and REST answers."""
    from nni_experiment import nni_experiment  # beside this file
    shutil.rmtree(root, ignore_errors=True)
    with nni_experiment(FIXTURE / 'config.yml', root) as experiment:
        status = experiment.wait(timeout=900)
        print(f'experiment {experiment.id}: {status}')
        (FIXTURE / 'rest').mkdir(exist_ok=True)
        for name in REST_ENDPOINTS:
            (FIXTURE / 'rest' / f'{name}.json').write_text(json.dumps(experiment.api(name), indent=1) + '\n')
    (FIXTURE / 'db').mkdir(exist_ok=True)
    shutil.copyfile(experiment.directory / 'db' / 'nni.sqlite', FIXTURE / 'db' / 'nni.sqlite')


if __name__ == '__main__':
    if sys.argv[1:] != ['--record']:
        sys.exit(__doc__)
    record()
