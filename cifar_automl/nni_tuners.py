"""NNI 3.0 tuners with the fixes this repository needs (NNI 3.0 is the last release).

A config names one as a custom tuner; the dispatcher imports it from the repository:

    tuner:
      codeDirectory: ..
      className: cifar_automl.nni_tuners.Hyperband
      classArgs: {optimize_mode: maximize, R: 27, eta: 3}
"""
from nni.algorithms.hpo import hyperband_advisor

BUDGET_KEY = hyperband_advisor._KEY  # 'TRIAL_BUDGET', the name NNI's Hyperband gives the budget


class Hyperband(hyperband_advisor.Hyperband):
    """NNI's Hyperband with two fixes.

    1. NNI 3.0's dispatcher dies after the first trial ends: Hyperband's parameter ids are
       strings ('0-3_0_5': bracket, round, counter) and `Recoverable.is_created_in_previous_exp`
       compares them to an int (`TypeError: '<=' not supported between instances of 'str' and
       'int'`, microsoft/nni#5263). Here a trial is "from a previous run" exactly when its
       bracket is not one this tuner created, which is what the check is for after a resume.
    2. The budget arrives as the parameter `TRIAL_BUDGET`, which the trial refuses as unknown;
       here it arrives as `budget_parameter` (default `epochs`), so a trial with budget r trains
       r epochs with its whole learning-rate schedule. R is then the longest trial, in epochs.
    """

    def __init__(self, optimize_mode='maximize', R=27, eta=3, exec_mode='parallelism', budget_parameter='epochs'):
        super().__init__(optimize_mode=optimize_mode, R=R, eta=eta, exec_mode=exec_mode)
        self.budget_parameter = budget_parameter

    def is_created_in_previous_exp(self, param_id):
        if param_id is None:
            return False
        return str(param_id).split('_')[0] not in self.brackets

    def handle_update_search_space(self, data):
        if self.budget_parameter in data:
            raise ValueError(f'search space: {self.budget_parameter!r} is the Hyperband budget (1 to R={self.R}); '
                             'remove it from the search space')
        super().handle_update_search_space(data)

    def _get_one_trial_job(self):
        job = super()._get_one_trial_job()
        if job is None:
            return None
        parameters = dict(job['parameters'])  # a copy: the bracket keeps the original and raises its budget later
        parameters[self.budget_parameter] = parameters.pop(BUDGET_KEY)
        return {**job, 'parameters': parameters}
