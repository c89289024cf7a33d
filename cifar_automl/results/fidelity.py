"""Can short trials be trusted? The Spearman rank correlation between a configuration's metric
at a short budget and at the full one, over the configurations that reached both: what a
multi-fidelity tuner (Hyperband) or an assessor (Medianstop) bets on when it stops trials early.

Budgets are a multi-fidelity tuner's budget parameter where the tuner has one (Hyperband's rungs:
the same configuration trained again for longer), else each trial's intermediate results
against its final one (the first epochs against the whole run).
"""
import json
from dataclasses import dataclass

from .experiment import format_value, is_number

MIN_TRIALS_FOR_FIDELITY = 8  # fewer configurations at both budgets and a rank correlation says little
TRUSTED_RHO = 0.7  # a strong rank correlation: the short budget orders configurations as the full one


@dataclass
class Pair:
    short: str  # the short budget, as the table shows it: 'epoch 2' or 'epochs 3'
    long: str  # the budget it is compared with: 'final' or 'epochs 9'
    final: bool  # whether `long` is the full budget, which the reading is about
    trials: int  # the configurations with a result at both
    rho: float = None  # Spearman's rank correlation; None with fewer than 3 configurations or a constant side


def budget_parameter(experiment):
    """The parameter a multi-fidelity tuner sets the budget by (a Hyperband config's classArgs
    budget_parameter, or NNI's own TRIAL_BUDGET) when its trials carry it, else None."""
    algorithm = experiment.profile.get('tuner') or experiment.profile.get('advisor') or {}
    name = (algorithm.get('classArgs') or {}).get('budget_parameter') or 'TRIAL_BUDGET'
    return name if any(name in trial.parameters for trial in experiment.trials) else None


def spearman(a, b):
    """Spearman's rho of two equally long lists; None where it is undefined or meaningless."""
    from scipy.stats import spearmanr
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def rung_pairs(experiment, budget):
    """Every pair of budgets that some configuration (the parameters less the budget) reached both of."""
    metrics = {}  # configuration -> {budget: final metric}
    for trial in experiment.trials:
        if is_number(trial.metric) and is_number(trial.parameters.get(budget)):
            rest = json.dumps({k: v for k, v in trial.parameters.items() if k != budget}, sort_keys=True)
            metrics.setdefault(rest, {})[trial.parameters[budget]] = trial.metric
    budgets = sorted({b for at in metrics.values() for b in at})
    pairs = []
    for i, short in enumerate(budgets):
        for long in budgets[i + 1:]:
            both = [at for at in metrics.values() if short in at and long in at]
            if both:
                pairs.append(Pair(f'{budget} {short:g}', f'{budget} {long:g}', long == budgets[-1], len(both),
                                  spearman([at[short] for at in both], [at[long] for at in both])))
    return pairs


def epoch_pairs(experiment):
    """Each intermediate result (epoch) but the last against the final metric."""
    finished = [t for t in experiment.trials if is_number(t.metric)]
    longest = max((len(t.intermediate) for t in finished), default=0)
    pairs = []
    for epoch in range(1, longest):
        both = [(t.intermediate[epoch - 1]['default'], t.metric) for t in finished
                if len(t.intermediate) >= epoch and is_number(t.intermediate[epoch - 1].get('default'))]
        if both:
            pairs.append(Pair(f'epoch {epoch}', 'final', True, len(both),
                              spearman([short for short, _ in both], [final for _, final in both])))
    return pairs


def fidelity_pairs(experiment):
    budget = budget_parameter(experiment)
    return rung_pairs(experiment, budget) if budget else epoch_pairs(experiment)


def reading(pairs):
    """One line: whether short trials rank configurations as full ones do, from the pairs against
    the full budget with enough configurations."""
    enough = [p for p in pairs if p.final and p.trials >= MIN_TRIALS_FOR_FIDELITY and p.rho is not None]
    if not pairs:
        return 'No short budget to compare: no configuration has results at two budgets.'
    if not enough:
        most = max(p.trials for p in pairs if p.final) if any(p.final for p in pairs) else 0
        return (f'Too few configurations reached a short budget and the full one ({most} at most; it takes '
                f'{MIN_TRIALS_FOR_FIDELITY}) to tell whether short trials can be trusted.')
    trusted = [p for p in enough if p.rho >= TRUSTED_RHO]
    if len(trusted) == len(enough):
        return (f'Short trials rank configurations like full ones: rho {min(p.rho for p in enough):.2f} or more '
                f'from {enough[0].short} on.')
    if not trusted:
        return (f'Short trials cannot be trusted here: rho {max(p.rho for p in enough):.2f} at most against '
                f'the full budget.')
    untrusted = [p for p in enough if p.rho < TRUSTED_RHO]
    return (f'Short trials cannot be trusted at {", ".join(f"{p.short} (rho {p.rho:.2f})" for p in untrusted)}; '
            f'they rank configurations like full ones at {", ".join(f"{p.short} (rho {p.rho:.2f})" for p in trusted)}.')


def fidelity_section(experiments):
    """report.md's section: each experiment's pairs of budgets and the reading of them; none where
    no experiment has results at two budgets."""
    lines = ['## Can short trials be trusted?', '',
             'Spearman rank correlation between the metric of the same configuration at a short budget and at a '
             'longer one, over the configurations that reached both: near 1, short trials order configurations '
             'as full ones do, and stopping the rest early (Hyperband, an assessor) loses little; near 0 or '
             f'below, short trials pick the wrong ones. Read with at least {MIN_TRIALS_FOR_FIDELITY} '
             f'configurations; rho {TRUSTED_RHO} or more counts as ranking like the full budget.', '']
    pairs = {experiment.id: fidelity_pairs(experiment) for experiment in experiments}
    if not any(pairs.values()):
        return []
    several = len(experiments) > 1
    headers = (['experiment'] if several else []) + ['short budget', 'against', 'configurations', 'Spearman rho']
    table = ['| ' + ' | '.join(headers) + ' |', '|' + '|'.join('---' for _ in headers) + '|']
    readings = []
    for experiment in experiments:
        table += [f'| {f"{experiment.id} | " if several else ""}{p.short} | {p.long} | {p.trials} | '
                  f'{format_value(p.rho, ".2f") or "-"} |' for p in pairs[experiment.id]]
        readings.append((f'- `{experiment.id}`: ' if several else '') + reading(pairs[experiment.id]))
    return lines + table + [''] + readings + ['']
