"""An NNI experiment and its trials as the report reads them, whatever the source."""
import math
import re
from dataclasses import dataclass, field

from ..config import OPTIONS


class ReportError(ValueError):
    """Bad input: no such experiment, no database, nothing to report."""


@dataclass
class Trial:
    number: int  # NNI's sequence id: "Trial No." in the WebUI
    id: str
    status: str
    parameters: dict
    final: dict = field(default_factory=dict)  # the final result; 'default' is the tuned metric
    intermediate: list = field(default_factory=list)  # one dict per reported epoch, in order
    start_ms: int = None
    end_ms: int = None

    @property
    def metric(self):
        return self.final.get('default')

    @property
    def duration_s(self):
        if self.start_ms is None or self.end_ms is None:
            return None
        return (self.end_ms - self.start_ms) / 1000


@dataclass
class Experiment:
    id: str
    profile: dict  # the experiment's config as NNI stores it (searchSpace, trialCommand, tuner, ...)
    trials: list
    source: str  # where it was read from, for the report's header
    start_ms: int = None  # when NNI started it
    exec_s: float = None  # NNI's running time, what maxExperimentDuration counts

    @property
    def maximize(self):
        algorithm = self.profile.get('tuner') or self.profile.get('advisor') or {}
        return (algorithm.get('classArgs') or {}).get('optimize_mode', 'maximize') != 'minimize'

    def better(self, a, b):
        return a > b if self.maximize else a < b

    def ranked(self):
        """Trials with a final metric, best first, then the others by trial number."""
        scored = sorted((t for t in self.trials if is_number(t.metric)),
                        key=lambda t: -t.metric if self.maximize else t.metric)
        return scored + [t for t in self.trials if not is_number(t.metric)]

    def best(self):
        ranked = self.ranked()
        return ranked[0] if ranked and is_number(ranked[0].metric) else None

    def tuner(self):
        """The tuner's name as a config gives it (TPE, or a custom tuner's class), and the assessor's."""
        names = []
        for key in ('tuner', 'advisor', 'assessor'):
            algorithm = self.profile.get(key) or {}
            name = algorithm.get('name') or (algorithm.get('className') or '').rsplit('.', 1)[-1]
            names += [name] if name else []
        return ' + '.join(names) or '?'

    def wall_time_s(self):
        """NNI's own running time; for a database without it, first trial start to last trial end."""
        if self.exec_s:
            return float(self.exec_s)
        starts = [t.start_ms for t in self.trials if t.start_ms is not None]
        ends = [t.end_ms for t in self.trials if t.end_ms is not None]
        return (max(ends) - min(starts)) / 1000 if starts and ends else None

    def limits_reached(self):
        """{config key: its value} for the limits that ended the experiment: one stopped by its
        maxExperimentDuration had its last trial cut short, and its best is the best of that time."""
        reached = {}
        duration = self.profile.get('maxExperimentDuration')
        if duration and self.exec_s is not None and self.exec_s >= seconds(duration):
            reached['maxExperimentDuration'] = duration
        max_trials = self.profile.get('maxTrialNumber')
        if max_trials and len(self.trials) >= max_trials:
            reached['maxTrialNumber'] = max_trials
        return reached

    def limits_text(self):
        return ' and '.join(f'{key} {value}' for key, value in self.limits_reached().items())

    def tuned_metric(self):
        """What is tuned, in words: experiments compare only when this is the same (the trial's
        --dataset, and whether `default` is maximised or minimised)."""
        dataset = re.search(r'--dataset[= ](\S+)', self.profile.get('trialCommand') or '')
        return (f'{"maximize" if self.maximize else "minimize"} `default` on '
                f'{dataset.group(1) if dataset else OPTIONS["dataset"].default}')

    def parameter_names(self):
        """Search-space order first, then any name only the trials carry (nested choices)."""
        names = list(self.profile.get('searchSpace') or {})
        for trial in self.trials:
            names += [name for name in trial.parameters if name not in names]
        return names


def seconds(duration):
    """NNI's duration strings ('60m', '1.5h', '3600s', '2d', or a bare number of seconds) in seconds."""
    number, unit = re.fullmatch(r'\s*([\d.]+)\s*([smhd]?)\s*', str(duration)).groups()
    return float(number) * {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400}[unit]


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_value(value, float_format='.4g'):
    if value is None:
        return ''
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, float_format)
    return str(value)


def scored_trials(experiments):
    """(experiment, trial) for every trial with a final metric."""
    return [(experiment, trial) for experiment in experiments for trial in experiment.trials if is_number(trial.metric)]


def training_time(trial):
    """The trial's own training seconds (data loading and the final test excluded), else its run time."""
    value = trial.final.get('train_time')
    return value if is_number(value) else trial.duration_s
