"""Whether short trials can be trusted (cifar_automl/results/fidelity.py): Spearman's rank
correlation between a short budget and the full one, per epoch for a plain tuner, per rung for
Hyperband, in report.md and in the comparison."""
import shutil

import numpy as np
import pytest

from cifar_automl import report
from cifar_automl.results.experiment import Experiment, Trial
from cifar_automl.results.fidelity import fidelity_pairs, fidelity_section
from test_report import FIXTURE

HYPERBAND = {'className': 'cifar_automl.nni_tuners.Hyperband',
             'classArgs': {'optimize_mode': 'maximize', 'budget_parameter': 'epochs'}}


def plain_experiment(first_epoch):
    """Twelve trials of five epochs: epochs 2-4 follow the final metric with a little noise,
    epoch 1 is first_epoch(the final metric)."""
    rng = np.random.default_rng(0)
    trials = []
    for number, final in enumerate(rng.permutation(12) + 70.0):
        epochs = [first_epoch(final)] + [final - 4 + k + rng.normal(0, 0.1) for k in range(3)] + [final]
        trials.append(Trial(number, f't{number}', 'SUCCEEDED', {'lr': float(number)}, {'default': final},
                            [{'default': value} for value in epochs]))
    return Experiment('plain001', {'tuner': {'name': 'TPE'}}, trials, 'test')


def hyperband_experiment(promoted, long_of_short):
    """`promoted` configurations trained 1 epoch and again 3 epochs, where the 3-epoch metric
    is long_of_short(the 1-epoch one), plus configurations that stopped at 1 epoch; trial
    numbers interleaved as Hyperband runs them, so pairs must be found by parameters."""
    rng = np.random.default_rng(1)
    trials, number = [], 0
    for config in range(promoted + 4):
        short = float(rng.uniform(30, 60))
        budgets = [(1, short)] + ([(3, long_of_short(short))] if config < promoted else [])
        for epochs, metric in budgets:
            trials.append(Trial(number, f'h{number}', 'SUCCEEDED', {'lr': config / 10, 'epochs': epochs},
                                {'default': metric}))
            number += 1
    order = rng.permutation(len(trials))
    return Experiment('hyper001', {'tuner': HYPERBAND}, [trials[i] for i in order], 'test')


def test_epochs_that_rank_trials_like_the_final_metric_are_told_apart_from_those_that_do_not():
    experiment = plain_experiment(lambda final: 100 - final)  # epoch 1 ranks the trials backwards
    pairs = fidelity_pairs(experiment)
    assert [(p.short, p.long, p.trials) for p in pairs] == [(f'epoch {k}', 'final', 12) for k in (1, 2, 3, 4)]
    assert pairs[0].rho == pytest.approx(-1.0)
    assert all(p.rho > 0.99 for p in pairs[1:])
    text = '\n'.join(fidelity_section([experiment]))
    assert '| epoch 1 | final | 12 | -1.00 |' in text
    assert ('Short trials cannot be trusted at epoch 1 (rho -1.00); they rank configurations like full ones at '
            'epoch 2 (rho 1.00)') in text


def test_hyperband_rungs_pair_each_configuration_with_itself_at_the_longer_budget():
    experiment = hyperband_experiment(9, lambda short: 130 - short)  # 3 epochs reverse what 1 epoch said
    [pair] = fidelity_pairs(experiment)
    assert (pair.short, pair.long, pair.trials) == ('epochs 1', 'epochs 3', 9)
    assert pair.rho == pytest.approx(-1.0)
    assert 'Short trials cannot be trusted here: rho -1.00 at most' in '\n'.join(fidelity_section([experiment]))
    trusted = hyperband_experiment(9, lambda short: short + 20)
    assert 'Short trials rank configurations like full ones: rho 1.00 or more from epochs 1 on.' in \
        '\n'.join(fidelity_section([trusted]))


def test_too_few_configurations_at_both_budgets_are_not_read():
    experiment = hyperband_experiment(3, lambda short: short + 20)
    text = '\n'.join(fidelity_section([experiment]))
    assert '| epochs 1 | epochs 3 | 3 | 1.00 |' in text
    assert 'Too few configurations reached a short budget and the full one (3 at most; it takes 8)' in text


def test_comparison_reads_each_experiment_and_leaves_the_section_out_without_short_budgets():
    plain = plain_experiment(lambda final: final - 5)
    hyper = hyperband_experiment(9, lambda short: short + 20)
    text = '\n'.join(fidelity_section([hyper, plain]))
    assert '| experiment | short budget | against | configurations | Spearman rho |' in text
    assert '| hyper001 | epochs 1 | epochs 3 | 9 | 1.00 |' in text and '| plain001 | epoch 4 | final | 12 |' in text
    assert '- `hyper001`: Short trials rank' in text and '- `plain001`: ' in text
    one_epoch = Experiment('once0001', {}, [Trial(0, 'a', 'SUCCEEDED', {}, {'default': 1.0}, [{'default': 1.0}])],
                           'test')
    assert fidelity_section([one_epoch]) == []


def test_report_has_the_section_for_a_real_experiment(tmp_path):
    """The recorded NNI experiment: four finished trials of two epochs each."""
    shutil.copytree(FIXTURE / 'db', tmp_path / 'experiment' / 'db')
    assert report.main([str(tmp_path / 'experiment'), '--out', str(tmp_path / 'out')]) == 0
    markdown = (tmp_path / 'out' / 'report.md').read_text()
    assert '## Can short trials be trusted?' in markdown and '| epoch 1 | final | 4 |' in markdown
    assert markdown.index('## Can short trials be trusted?') < markdown.index('## Which parameters matter')
