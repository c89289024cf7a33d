"""Results out of NNI experiments, one module per job; `python -m cifar_automl.report` is the
entry point (cifar_automl/report.py).

- experiment: an experiment and its trials, as every source is read into
- load: from a running experiment's REST API, a db/nni.sqlite, or nnictl's registry
- write: one experiment's trials.csv, best_command.txt, report.md and plots
- compare: several experiments side by side
- plots: one experiment's plots
- fidelity, importance, pareto: what a set of trials says beyond its best one (can short trials
  be trusted, which parameters matter, what accuracy costs)
- commands: the command line that reruns a trial
"""
