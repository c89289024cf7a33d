"""Trial command lines: the one that reruns a trial, and what an experiment's command fixes."""
import re
import shlex

from ..config import ConfigError, resolve


def best_command(experiment, trial):
    """The experiment's trial command with the trial's parameters as flags: what NNI ran,
    runnable by hand from the trial code directory (the parameters override flags of the same name)."""
    return with_flags(experiment.profile.get('trialCommand') or 'python trial/main.py', trial.parameters)


def with_flags(command, flags):
    """`command` with each of `flags` as `--name value`, replacing the command's own value of that name."""
    for name, value in flags.items():
        # Drop the command's own `--name value` / `--name=value` so the tuned value is the one that counts.
        command = re.sub(rf'(?<!\S)--{re.escape(name)}(=\S*|\s+(?!--)\S+)?(?!\S)', '', command)
        command = f'{command.rstrip()} --{name} {shlex.quote(format_flag(value))}'
    return re.sub(r' {2,}', ' ', command).strip()


def format_flag(value):
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)  # repr-exact for floats: 0.0005 stays 0.0005


def command_values(experiment):
    """What the experiment's trial command sets for every trial option (its flags, else the trial's
    defaults), so that a trial lacking a parameter gets the value it trained with: a plain
    tuner's fixed --epochs beside Hyperband's budgets, or Adam's beta1 where only SGD tunes momentum."""
    words = shlex.split(experiment.profile.get('trialCommand') or '')
    if len(words) < 2 or not words[1].endswith('trial/main.py'):
        return {}
    try:
        return vars(resolve(words[2:]))
    except (ConfigError, SystemExit):  # a command the trial refuses: its trials failed anyway
        return {}
