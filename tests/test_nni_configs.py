"""The shipped NNI configs: NNI's own config classes accept them, their trial commands and search
spaces are ones the trial runs, their GPU settings are ones NNI 3.0's shipped scheduler starts,
and .nniignore keeps data and results out of what NNI uploads."""
import json
import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import nni_node
import pytest
import torch
import yaml
from nni.experiment.config import ExperimentConfig

from cifar_automl import config, table_trial, tables, trial
from cifar_automl.search_space import check_space
from conftest import REPO

CONFIGS = sorted((REPO / 'nni_configs').glob('*.yml'))
NNI_NODE = Path(nni_node.__file__).parent
NODE = NNI_NODE / 'node'


def load(path):
    """As `nnictl create` reads a config (launcher.create_experiment): ExperimentConfig.load."""
    return ExperimentConfig.load(str(path))


@pytest.fixture
def ssh_home(tmp_path, monkeypatch):
    """remote.yml names ~/.ssh/id_ed25519, and NNI checks that the key file exists."""
    (tmp_path / '.ssh').mkdir()
    (tmp_path / '.ssh/id_ed25519').write_text('placeholder\n')
    monkeypatch.setenv('HOME', str(tmp_path))


@pytest.mark.parametrize('path', CONFIGS, ids=[p.name for p in CONFIGS])
def test_nni_validates_the_config(path, ssh_home):
    canonical = load(path).json()  # canonicalises paths and validates every field, as Experiment.start does
    assert canonical['searchSpace']
    assert Path(canonical['trialCodeDirectory']) == REPO


def trial_script(path):
    """The script the config's trial command runs in the code directory."""
    exp = load(path)
    command = shlex.split(exp.trial_command)
    assert command[0] == 'python3' and (path.parent / exp.trial_code_directory / command[1]).is_file()
    return command[1]


TRAINING_CONFIGS = [p for p in CONFIGS if trial_script(p) == 'trial/main.py']
TABLE_CONFIGS = [p for p in CONFIGS if trial_script(p) == 'trial/table.py']


def test_every_config_runs_a_training_or_a_table_lookup():
    assert set(TRAINING_CONFIGS) | set(TABLE_CONFIGS) == set(CONFIGS) and TABLE_CONFIGS


@pytest.mark.parametrize('path', TRAINING_CONFIGS, ids=[p.name for p in TRAINING_CONFIGS])
def test_search_space_passes_check_space(path):
    assert check_space(path.parent / load(path).search_space_file)


def trial_flags(path):
    """The flags of the config's trial command, which must run trial/main.py in the code directory."""
    command = shlex.split(load(path).trial_command)
    assert command[:2] == ['python3', 'trial/main.py'], load(path).trial_command
    return [os.path.expanduser(arg) for arg in command[2:]]


@pytest.mark.parametrize('path', TABLE_CONFIGS, ids=[p.name for p in TABLE_CONFIGS])
def test_table_config_ships_its_tables_search_space_on_a_cpu(path):
    """A table trial's flags are ones it accepts, and the search space is the one table_trial
    derives from the table with the trial's encoding (no key the trial would refuse)."""
    exp = load(path)
    args = table_trial.build_parser().parse_args(shlex.split(exp.trial_command)[2:])
    space = json.loads((path.parent / exp.search_space_file).read_text())
    assert space == table_trial.search_space(tables.load(args.table), args.encoding)
    assert exp.trial_gpu_number is None and exp.trial_concurrency == 1  # the benchmark's sequential mode


@pytest.mark.parametrize('path', TRAINING_CONFIGS, ids=[p.name for p in TRAINING_CONFIGS])
def test_trial_command_flags_are_ones_the_trial_accepts(path):
    flags = trial_flags(path)
    cfg = config.resolve(flags)
    space = json.loads((path.parent / load(path).search_space_file).read_text())
    assert not set(space) & {arg[2:] for arg in flags if arg.startswith('--')}, 'a flag the tuner overrides anyway'
    assert cfg.log_frequency == 0  # one line per epoch in trial.log, not hundreds


def test_quickstart_is_small_cpu_digits_tpe():
    exp = load(REPO / 'nni_configs/quickstart.yml')
    cfg = config.resolve(trial_flags(REPO / 'nni_configs/quickstart.yml'))
    assert cfg.dataset == 'digits' and exp.training_service.platform == 'local'
    assert exp.tuner.name == 'TPE'
    assert exp.trial_gpu_number is None  # a CPU config: NNI would wait for a GPU forever
    assert exp.max_trial_number * cfg.epochs <= 100  # about 2 minutes on 2 idle cores (quickstart.yml)


@pytest.mark.parametrize('path', CONFIGS, ids=[p.name for p in CONFIGS])
def test_no_secrets_or_personal_paths(path):
    text = path.read_text()
    for needle in ('/home/', '/Users/', '/root', 'C:\\'):
        assert needle not in text, f'{path.name} contains {needle!r}'
    secrets = {'password', 'sshPassphrase', 'keyVaultKey', 'azureAccount', 'token'}
    assert not secrets & set(keys(yaml.safe_load(text))), path.name
    exp = load(path)
    for machine in getattr(exp.training_service, 'machine_list', None) or []:
        assert machine.host.startswith('<') and machine.user.startswith('<')
        assert str(machine.ssh_key_file).startswith('~/')


def keys(data):
    if isinstance(data, dict):
        for key, value in data.items():
            yield key
            yield from keys(value)
    elif isinstance(data, list):
        for item in data:
            yield from keys(item)


# NNI 3.0's local and remote training services hand each trial's GPU request,
# trialGpuNumber / maxTrialNumberPerGpu, to the TaskScheduler in nni_node. These tests run that
# shipped scheduler (in NNI's bundled Node.js) on a simulated one-GPU machine.

SCHEDULER_SCRIPT = r"""
global.nniUnitTest = true;
require('common/globals/unittest');
const { TaskScheduler, UnitTestHelpers } = require('common/trial_keeper/task_scheduler/scheduler');
// node -e SCRIPT ARGS puts the arguments from argv[1] on
const cases = JSON.parse(process.argv[1]);
(async () => {
  const out = [];
  for (const c of cases) {
    UnitTestHelpers.mockGpuInfo({
      gpuNumber: 1,
      gpus: [{ index: 0, gpuCoreUtilization: 0, gpuMemoryUtilization: 0 }],
      processes: c.gpuBusy ? [{ gpuIndex: 0, type: 'graphics' }] : [],
    });
    const scheduler = new TaskScheduler();
    await scheduler.init();
    const placed = [];
    try {
      for (let i = 0; i < c.trials; i++) {
        placed.push(await scheduler.schedule('exp', 'trial' + i, c.gpuNumber, { rejectActive: !c.useActiveGpu }));
      }
    } catch (error) {
      placed.push({ error: error.message });
    }
    out.push(placed);
  }
  console.log(JSON.stringify(out));
})();
"""


def schedule_on_one_gpu(cases):
    """For each case {gpuNumber, trials, useActiveGpu, gpuBusy}: what the scheduler answered for
    each trial (an environment with CUDA_VISIBLE_DEVICES, or null: not now)."""
    result = subprocess.run([str(NODE), '-e', SCHEDULER_SCRIPT, json.dumps(cases)], cwd=NNI_NODE,
                            env={**os.environ, 'NODE_PATH': str(NNI_NODE)}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_nni_local_scheduler_refuses_all_gpus_of_the_machine():
    """The defect: a trial asking for as many GPUs as the machine has is never scheduled."""
    source = (NNI_NODE / 'common/trial_keeper/task_scheduler/scheduler.js').read_text()
    assert 'if (gpuNumber >= this.gpus.length) {' in source
    for training_service in ('local_v3/local.js', 'remote_v3/remote.js'):
        assert 'gpuNumber /= ' in (NNI_NODE / 'training_service' / training_service).read_text()
    [refused] = schedule_on_one_gpu([{'gpuNumber': 1, 'trials': 1, 'useActiveGpu': True, 'gpuBusy': False}])
    assert refused == [None]


def gpu_request(exp):
    """trialGpuNumber / maxTrialNumberPerGpu per machine, as local.js and remote.js compute it."""
    service = exp.training_service
    machines = getattr(service, 'machine_list', None) or [service]
    return [(exp.trial_gpu_number / machine.max_trial_number_per_gpu, machine.use_active_gpu) for machine in machines]


GPU_CONFIGS = [p for p in CONFIGS if load(p).trial_gpu_number and load(p).training_service.platform in ('local', 'remote')]


def test_there_are_local_gpu_configs():
    names = {p.name for p in GPU_CONFIGS}
    assert {'cifar10_tpe.yml', 'cifar10_random.yml', 'cifar10_anneal.yml', 'cifar10_hyperband.yml',
            'remote.yml', 'darts_retrain_gpu.yml'} <= names


ALL_GPU_CONFIGS = [p for p in CONFIGS if load(p).trial_gpu_number]


@pytest.mark.parametrize('path', ALL_GPU_CONFIGS, ids=[p.name for p in ALL_GPU_CONFIGS])
def test_gpu_config_trial_fails_at_once_where_cuda_is_unusable(path, monkeypatch, capsys):
    """An NVIDIA driver too old for torch's CUDA 13.0 leaves torch.cuda.is_available() False: the trial
    NNI placed on a GPU must fail, naming the driver, not train on the CPU for hours."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    flags = trial_flags(path)
    assert config.resolve(flags).device == 'cuda'
    assert trial.main(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --device cuda: ') and 'NVIDIA driver >= 580' in err and 'docs/gpu.md' in err


@pytest.mark.parametrize('path', GPU_CONFIGS, ids=[p.name for p in GPU_CONFIGS])
def test_gpu_config_says_how_to_scale_to_more_gpus(path):
    """trialConcurrency is two trials per GPU of one machine; the comments say what to set on more."""
    text = path.read_text()
    assert 'On N GPUs: trialConcurrency 2N' in text or '2 x machines x GPUs' in text


def test_cpu_configs_do_not_ask_for_a_gpu():
    for path in TRAINING_CONFIGS:
        if load(path).trial_gpu_number is None:
            assert not config.resolve(trial_flags(path)).device.startswith('cuda'), path.name


def test_darts_retrain_has_a_gpu_variant_with_the_same_trials():
    cpu_path, gpu_path = REPO / 'nni_configs/darts_retrain.yml', REPO / 'nni_configs/darts_retrain_gpu.yml'
    cpu, gpu = load(cpu_path), load(gpu_path)
    assert cpu.trial_gpu_number is None and gpu.trial_gpu_number == 1
    assert gpu.search_space_file == cpu.search_space_file and gpu.tuner.json() == cpu.tuner.json()
    assert trial_flags(gpu_path) == ['--device', 'cuda'] + trial_flags(cpu_path)


@pytest.mark.parametrize('path', GPU_CONFIGS, ids=[p.name for p in GPU_CONFIGS])
def test_gpu_config_is_scheduled_on_a_one_gpu_machine(path, ssh_home):
    exp = load(path)
    for gpu_number, use_active_gpu in gpu_request(exp):
        per_gpu = round(1 / gpu_number)
        [placed] = schedule_on_one_gpu([{'gpuNumber': gpu_number, 'trials': per_gpu + 1,
                                         'useActiveGpu': use_active_gpu, 'gpuBusy': False}])
        assert placed[:per_gpu] == [{'CUDA_VISIBLE_DEVICES': '0'}] * per_gpu  # all start at once
        assert placed[per_gpu] is None  # one more waits for a free share


def test_use_active_gpu_is_what_lets_a_busy_gpu_be_used():
    """A GPU already running a process (a display, a notebook, another user's job) is filtered out
    unless useActiveGpu. With a fractional request NNI 3.0 then does not wait: its scheduler
    throws (gpus[0] is undefined), which is why the shipped GPU configs set useActiveGpu: true."""
    busy_skipped, busy_used = schedule_on_one_gpu([
        {'gpuNumber': 0.5, 'trials': 1, 'useActiveGpu': False, 'gpuBusy': True},
        {'gpuNumber': 0.5, 'trials': 1, 'useActiveGpu': True, 'gpuBusy': True},
    ])
    assert 'util' in busy_skipped[0]['error']
    assert busy_used == [{'CUDA_VISIBLE_DEVICES': '0'}]
    for path in GPU_CONFIGS:
        assert all(use_active for _, use_active in gpu_request(load(path))), path.name


def test_cluster_config_uses_the_reuse_scheduler_without_the_defect():
    """frameworkcontroller.yml asks for 1 of a pod's 1 GPU: fine, because in reuse mode NNI schedules
    trials with its environment scheduler, which compares the request with >=."""
    exp = load(REPO / 'nni_configs/frameworkcontroller.yml')
    assert exp.training_service.reuse_mode and exp.trial_gpu_number == 1
    assert exp.training_service.task_roles[0].gpu_number >= exp.trial_gpu_number
    source = (NNI_NODE / 'training_service/reusable/gpuScheduler.js').read_text()
    assert 'environment.defaultGpuSummary.gpuCount >= requiredGPUNum' in source
    image = exp.training_service.task_roles[0].docker_image
    assert image.startswith('<registry>/cifar-automl')


def test_only_local_and_remote_configs_ask_for_gpus_this_way():
    for path in CONFIGS:
        exp = load(path)
        if exp.training_service.platform == 'local' and 'digits' in exp.trial_command:
            assert exp.trial_gpu_number is None, path.name


# What NNI uploads to SSH machines and clusters: it packs trialCodeDirectory with
# common/tarball.js, honouring .nniignore, and refuses more than 2000 files or 300 MB.

TARBALL_SCRIPT = r"""
global.nniUnitTest = true;
require('common/globals/unittest');
const { globals } = require('common/globals');
// node -e SCRIPT ARGS puts the arguments from argv[1] on
globals.paths.experimentRoot = process.argv[1];
require('common/tarball').createTarball('code', process.argv[2]).then(path => console.log(path));
"""


def test_nniignore_keeps_data_and_results_out_of_the_upload(tmp_path):
    code = tmp_path / 'code'
    listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (code / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, code / name)
    for junk in ('data/cifar-10-batches-py/data_batch_1', 'data/cifar10_uint8.pt', 'data/cifar-10-python.tar.gz',
                 'outputs/trial-1/best.pt', 'nni-experiments/abc/db/nni.sqlite', '.git/HEAD',
                 'cifar_automl/__pycache__/trial.cpython-311.pyc', 'runs/x/events.out'):
        (code / junk).parent.mkdir(parents=True, exist_ok=True)
        (code / junk).write_bytes(b'x' * 1000)
    result = subprocess.run([str(NODE), '-e', TARBALL_SCRIPT, str(tmp_path / 'exp'), str(code)], cwd=NNI_NODE,
                            env={**os.environ, 'NODE_PATH': str(NNI_NODE)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    with tarfile.open(result.stdout.strip().splitlines()[-1]) as tar:
        packed = set(tar.getnames())
    assert {'trial/main.py', 'cifar_automl/trial.py', 'cifar_automl/config.py', 'requirements.txt'} <= packed
    for name in packed:
        assert not name.startswith(('data/', 'outputs/', 'nni-experiments/', '.git/', 'runs/')), name
        assert not name.endswith(('.pt', '.pyc', '.tar.gz')), name
    assert len(packed) < 2000
