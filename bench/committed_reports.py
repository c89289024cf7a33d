"""The parameter importance of committed reports, checked against Optuna's fANOVA, and the
sections the report derives from trials alone rewritten, for experiments whose NNI directories
are gone (their db/nni.sqlite was never committed).

    python bench/committed_reports.py docs/results/cifar10_cpu          # print ours against Optuna's
    python bench/committed_reports.py docs/results/cifar10_cpu --write  # and rewrite the sections

FOLDER is one experiment's report (trials.csv and report.md, as `python -m cifar_automl.report`
writes them) or a comparison of several (their folders beside its report.md, listed under its
Sources). Each experiment is rebuilt from its trials.csv (every trial's parameters and final
metrics), the trial command in its report.md, and the search space and tuner of the
nni_configs/ file with its experiment name. That is all the importance and Hyperband's
short-trial check read; with --write they are recomputed into each report.md (and importance.png),
and the check against Optuna goes to FOLDER/importance_vs_optuna.md. What trials.csv lacks is not
rebuilt: the per-epoch results a plain tuner's short-trial check reads, and the times behind the
best-so-far plot, need the experiment directory (python -m cifar_automl.report DIR). Rebuilt
so, the committed CIFAR-10 and quickstart experiments gave the importance tables the report had
written from their databases to the last digit (with the estimator of that time).

Optuna's FanovaImportanceEvaluator is an independent fANOVA (Hutter et al. 2014): its own forest
(64 trees), marginals uniform over each parameter's range where ours are the trials' own values,
and each tree's shares averaged where ours are the forest's. It is averaged over SEEDS forests.
"""
import csv
import json
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402  (PyYAML comes with nni and optuna)

from cifar_automl.config import ArgumentParser  # noqa: E402
from cifar_automl.files import atomic_write_text  # noqa: E402
from cifar_automl.results.experiment import Experiment, Trial  # noqa: E402
from cifar_automl.results.fidelity import budget_parameter, fidelity_section  # noqa: E402
from cifar_automl.results.importance import finished_trials, importance_section, parameter_importance  # noqa: E402
from cifar_automl.results.plots import pyplot  # noqa: E402

SEEDS = 5
HEADINGS = ('## Can short trials be trusted?', '## Which parameters matter')  # the sections rewritten


def csv_value(text):
    """A trials.csv cell as the trial reported it: bool, int, float or string."""
    if text in ('True', 'False'):
        return text == 'True'
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def rebuild(folder):
    """One experiment from its committed report folder."""
    head = (folder / 'report.md').read_text()
    title = re.search(r'^# NNI experiment `(\w+)`: (\S+)', head, re.M)
    command = re.search(r'^- Trial command: `(.*)`$', head, re.M)
    if not (title and command):
        raise ValueError(f'{folder / "report.md"}: no "# NNI experiment `ID`: NAME" title or "- Trial command:" line')
    (experiment_id, name), command = title.groups(), command.group(1)
    configs = [path for path in sorted((REPO / 'nni_configs').glob('*.yml'))
               if yaml.safe_load(path.read_text()).get('experimentName') == name]
    if len(configs) != 1:
        raise ValueError(f'{folder}: {len(configs)} files in nni_configs/ have experimentName {name}; expected one')
    config = yaml.safe_load(configs[0].read_text())
    space = json.loads((configs[0].parent / config['searchSpaceFile']).read_text())
    with open(folder / 'trials.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0])
    parameters = columns[columns.index('status') + 1:columns.index('default')]
    finals = columns[columns.index('default'):columns.index('best_intermediate')]
    trials = [Trial(int(row['trial']), row['id'], row['status'],
                    {key: csv_value(row[key]) for key in parameters if row[key] != ''},
                    {key: csv_value(row[key]) for key in finals if row[key] != ''}) for row in rows]
    profile = {'experimentName': name, 'searchSpace': space, 'trialCommand': command,
               'tuner': config.get('tuner') or config.get('advisor')}
    return Experiment(experiment_id, profile, sorted(trials, key=lambda t: t.number), str(folder))


def optuna_importance(experiments, names):
    """Optuna's fANOVA importance of `names` over the same trials, averaged over SEEDS forests."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, space, parameters, metrics = finished_trials(experiments)
    distributions = {}
    for name in names:
        values, spec = [p[name] for p in parameters], space.get(name) or {}
        if spec.get('_type') == 'choice' or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in values):
            choices = list(spec.get('_value', []))
            distributions[name] = optuna.distributions.CategoricalDistribution(
                choices + sorted(set(values) - set(choices), key=str))
        else:
            low, high = spec.get('_value', [min(values), max(values)])[:2]
            distributions[name] = optuna.distributions.FloatDistribution(
                float(min(low, *values)), float(max(high, *values)), log=spec.get('_type') == 'loguniform')
    study = optuna.create_study(direction='maximize' if experiments[0].maximize else 'minimize')
    study.add_trials([optuna.trial.create_trial(
        params={name: float(p[name]) if isinstance(distributions[name], optuna.distributions.FloatDistribution)
                else p[name] for name in names}, distributions=distributions, value=metric)
        for p, metric in zip(parameters, metrics)])
    runs = [optuna.importance.FanovaImportanceEvaluator(seed=seed).evaluate(study) for seed in range(SEEDS)]
    return {name: (statistics.mean(run[name] for run in runs), statistics.stdev(run[name] for run in runs))
            for name in names}


def ranks(values):
    order = sorted(values, key=lambda name: -values[name])
    return {name: order.index(name) + 1 for name in values}


def check(experiments):
    """Markdown: ours against Optuna's for these experiments' trials, parameter by parameter."""
    from scipy.stats import spearmanr
    ours = parameter_importance(experiments)
    shares = dict(ours.shares)
    theirs = optuna_importance(experiments, list(shares))
    our_rank, their_rank = ranks(shares), ranks({name: mean for name, (mean, _) in theirs.items()})
    rho = spearmanr([shares[name] for name in shares], [theirs[name][0] for name in shares]).statistic
    top = [name for name in shares if our_rank[name] <= 3]
    lines = [f'### {" + ".join(e.id for e in experiments)}: {ours.trials} trials, forest out-of-bag R² {ours.r2:.2f}'
             + (' (below 0.2: noise)' if ours.noise else ''), '',
             f'Sums: ours {sum(shares.values()):.1%}, Optuna\'s {sum(m for m, _ in theirs.values()):.1%}. '
             f'Spearman rho between the two over all {len(shares)} parameters: {rho:.2f}. Our top three, '
             f'{", ".join(top)}, are Optuna\'s ' + ', '.join(str(their_rank[name]) for name in top) + '.', '',
             '| parameter | ours | rank | Optuna\'s fANOVA (mean ± sd over 5 seeds) | rank |', '|---|---|---|---|---|']
    lines += [f'| {name} | {share:.1%} | {our_rank[name]} | {theirs[name][0]:.1%} ± {theirs[name][1]:.1%} | '
              f'{their_rank[name]} |' for name, share in shares.items()]
    return lines + ['']


def rewrite_sections(report, experiments, plt):
    """report.md's short-trial check (where the trials hold it: Hyperband's budgets) and importance
    sections recomputed in place, importance.png beside it; the rest of the file as it was."""
    text = report.read_text()
    fidelity = fidelity_section(experiments) if all(budget_parameter(e) for e in experiments) else []
    importance, _ = importance_section(experiments, report.parent, plt)
    start = min(text.index(heading) for heading in HEADINGS if heading in text)
    following = [m.start() + 1 for m in re.finditer(r'\n## ', text[start:])
                 if not text[start + m.start() + 1:].startswith(HEADINGS)]
    end = start + following[0] if following else len(text)
    atomic_write_text(text[:start] + '\n'.join(fidelity + importance) + '\n' + text[end:], report)


def report_groups(folder):
    """{report.md: the experiments it covers} for a report folder or a comparison folder."""
    if (folder / 'trials.csv').is_file():
        return {folder / 'report.md': [rebuild(folder)]}
    comparison = (folder / 'report.md').read_text() if (folder / 'report.md').is_file() else ''
    if '## Sources' not in comparison:
        raise ValueError(f'{folder}: neither an experiment\'s report (trials.csv) nor a comparison (report.md '
                         'listing its Sources)')
    experiments = [rebuild(folder / i) for i in re.findall(r'^- `(\w+)`', comparison.split('## Sources')[1], re.M)]
    return {folder / 'report.md': experiments, **{folder / e.id / 'report.md': [e] for e in experiments}}


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', type=Path, help='a report folder, or a comparison folder holding them')
    parser.add_argument('--write', action='store_true', help='rewrite the sections and write importance_vs_optuna.md')
    args = parser.parse_args(argv)
    try:
        groups = report_groups(args.folder)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    lines = ['# Parameter importance: the report\'s against Optuna\'s fANOVA', '',
             f'`python bench/committed_reports.py {args.folder} --write`, on the trials committed in each '
             'experiment\'s trials.csv.', '']
    print('\n'.join(lines), flush=True)
    for group in groups.values():
        section = check(group)
        lines += section
        print('\n'.join(section), flush=True)
    if args.write:
        plt = pyplot()
        for report, group in groups.items():
            rewrite_sections(report, group, plt)
            print(f'rewrote {report}')
        atomic_write_text('\n'.join(lines), args.folder / 'importance_vs_optuna.md')
        print(f'wrote {args.folder / "importance_vs_optuna.md"}')
    return 0

if __name__ == '__main__':
    sys.exit(main())
