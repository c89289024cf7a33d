"""The Dockerfile, checked without a Docker engine: a pinned CUDA-capable base, the pinned
requirements installed from requirements.txt, and a default command that runs a shipped
experiment in the foreground from files that are in the image."""
import fnmatch
import json
import re

import pytest
from nni.experiment.config import ExperimentConfig

from conftest import REPO

DOCKERFILE = (REPO / 'Dockerfile').read_text()


def instructions(name):
    """The arguments of every `NAME ...` instruction (continuation lines joined)."""
    text = re.sub(r'\\\n\s*', ' ', DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def test_base_image_is_pinned_to_the_python_of_requirements():
    [base] = instructions('FROM')
    image, _, tag = base.partition(':')
    assert tag and tag != 'latest' and re.match(r'\d+\.\d+\.\d+', tag), base  # a full version, not a moving tag
    assert tag.startswith('3.11.'), 'requirements.txt is pinned for Python 3.11'
    # The PyPI torch wheel brings CUDA; these ask the NVIDIA runtime for the driver and nvidia-smi.
    env = ' '.join(instructions('ENV'))
    assert 'NVIDIA_DRIVER_CAPABILITIES=compute,utility' in env


def test_the_image_takes_only_the_gpus_docker_run_gives_it():
    """NVIDIA_VISIBLE_DEVICES=all baked in would hand every GPU of the host to any container of the
    image where the NVIDIA runtime is the default, `--gpus` or not."""
    assert 'NVIDIA_VISIBLE_DEVICES' not in ' '.join(instructions('ENV'))
    assert '--gpus all' in DOCKERFILE


def test_torch_compile_finds_a_c_compiler_for_triton():
    [install] = [run for run in instructions('RUN') if 'apt-get install' in run]
    assert 'gcc' in install.split() and 'libc6-dev' in install.split()
    assert 'rm -rf /var/lib/apt/lists/*' in install  # the package index stays out of the image


def test_requirements_are_installed_from_the_file_before_the_code():
    copies = instructions('COPY')
    runs = instructions('RUN')
    assert copies[0] == 'requirements.txt .'
    assert any('pip install -r requirements.txt' in run for run in runs)
    assert copies[-1] == '. .'
    assert DOCKERFILE.index('pip install -r requirements.txt') < DOCKERFILE.index('COPY . .')


def test_default_command_runs_a_shipped_experiment_in_the_foreground():
    [cmd] = instructions('CMD')
    argv = json.loads(cmd)  # exec form: signals reach nnictl, which stops the experiment
    assert argv[:2] == ['nnictl', 'create'] and '--foreground' in argv
    config_file = REPO / argv[argv.index('--config') + 1]  # WORKDIR is the repository root
    assert config_file.is_file()
    assert ExperimentConfig.load(str(config_file)).json()['trialCommand']
    assert argv[argv.index('--port') + 1] in ' '.join(instructions('EXPOSE')).split()


def ignored(path, patterns):
    parts = path.split('/')
    return any(fnmatch.fnmatch('/'.join(parts[:i]), pattern.lstrip('/'))
               for pattern in patterns for i in range(1, len(parts) + 1))


def test_dockerignore_keeps_data_out_and_the_code_in():
    patterns = [line.strip() for line in (REPO / '.dockerignore').read_text().splitlines()
                if line.strip() and not line.startswith('#')]
    for path in ('data/cifar10_uint8.pt', 'outputs/trial-1/best.pt', 'nni-experiments/x/db/nni.sqlite',
                 '.git/HEAD', 'cifar_automl/__pycache__/config.cpython-311.pyc'):
        assert ignored(path, patterns), path
    for path in ('requirements.txt', 'trial/main.py', 'cifar_automl/trial.py', 'nni_configs/cifar10_tpe.yml',
                 'search_spaces/cifar10_fast.json'):
        assert not ignored(path, patterns), path
        assert (REPO / path).is_file()


def test_cluster_config_runs_this_image():
    config = ExperimentConfig.load(str(REPO / 'nni_configs/frameworkcontroller.yml'))
    [role] = config.training_service.task_roles
    assert role.docker_image.endswith('/cifar-automl:<tag>')
    assert config.trial_command.startswith('python3 trial/main.py')  # python3 is the image's Python


@pytest.mark.parametrize('pattern', ['data', 'outputs', '.git'])
def test_nniignore_and_dockerignore_agree_on_data(pattern):
    assert pattern in (REPO / '.dockerignore').read_text().split()
    assert f'{pattern}/' in (REPO / '.nniignore').read_text().split()
