"""The trial's `darts:` model trains as the retrain does: the auxiliary head's loss in training only, and
drop path ramped over the epochs, held in a tensor so that torch.compile does not recompile each epoch."""
import json

import pytest
import torch

from cifar_automl import trial
from cifar_automl.arch_files import load_arch
from cifar_automl.models import build_model
from cifar_automl.models.darts import DropPath, build_darts, set_drop_path_prob

pytestmark = pytest.mark.filterwarnings('ignore::RuntimeWarning')  # NNI's import: "not a nn.Module" (harmless)

TINY_TRIAL = ['--model', 'darts:DARTS_V2', '--dataset', 'digits', '--width', '4', '--num_cells', '3', '--epochs', '2',
              '--subset', '128', '--batch_size', '32', '--log_frequency', '0', '--threads', '1', '--tta', '0']



def test_trial_darts_model_adds_the_auxiliary_loss_in_training_only(tmp_path, monkeypatch):
    calls = {'train': 0, 'eval': 0}
    auxiliary_forward = trial.auxiliary_forward

    def counting(loss_fn, weight):
        assert weight == 0.4  # the paper's default
        forward = auxiliary_forward(loss_fn, weight)

        def counted(model, images, labels):
            calls['train' if model.training else 'eval'] += 1
            return forward(model, images, labels)
        return counted
    monkeypatch.setattr(trial, 'auxiliary_forward', counting)
    assert trial.main(TINY_TRIAL + ['--output_dir', str(tmp_path / 'aux')]) == 0
    assert calls == {'train': 2 * 4, 'eval': 0}  # every training step (2 epochs of 4), no evaluation
    best = torch.load(tmp_path / 'aux' / 'best.pt', weights_only=False)
    assert any(key.startswith('auxiliary_head.') for key in best['model'])
    assert (best['config']['auxiliary_weight'], best['config']['drop_path_prob']) == (0.4, 0.2)

    calls['train'] = 0
    assert trial.main(TINY_TRIAL + ['--auxiliary_weight', '0', '--output_dir', str(tmp_path / 'plain')]) == 0
    assert calls['train'] == 0
    best = torch.load(tmp_path / 'plain' / 'best.pt', weights_only=False)
    assert not any(key.startswith('auxiliary_head.') for key in best['model'])
    assert 'test_acc' in json.loads((tmp_path / 'plain' / 'metrics.json').read_text())


def test_auxiliary_logits_come_only_in_train_mode():
    model = build_model('darts:DARTS_V2', 10, width=4, num_cells=3, auxiliary=True, drop_path_prob=0.2)
    images = torch.rand(2, 3, 32, 32)
    logits, auxiliary = model.train()(images)
    assert logits.shape == auxiliary.shape == (2, 10)
    assert model.eval()(images).shape == (2, 10)


def test_drop_path_drops_whole_samples_and_rescales_the_rest():
    drop = DropPath(0.0).train()
    set_drop_path_prob(torch.nn.Sequential(drop), 0.5)
    x = torch.ones(4000, 2, 3, 3)
    out = drop(x)
    kept = out.flatten(1).amax(1) > 0
    assert torch.equal(out[kept], torch.full_like(out[kept], 2.0)) and abs(kept.float().mean() - 0.5) < 0.05
    assert torch.equal(drop.eval()(x), x)
    network = build_darts(load_arch('DARTS_V2'), width=4, num_cells=3, drop_path_prob=0.2)
    drops = [m for m in network.modules() if isinstance(m, DropPath)]
    assert drops and all(float(m.drop_prob) == pytest.approx(0.2) for m in drops)
    assert not any('drop_prob' in key for key in network.state_dict())  # checkpoints are as before


def test_changing_the_drop_path_probability_does_not_recompile():
    """NNI's DropPath keeps a Python float: torch.compile guards on its value and compiles a new graph for
    each epoch's value (here 3 values, 3 graphs). The tensor-held probability compiles once."""
    from nni.nas.hub.pytorch.utils.nn import DropPath as NNIDropPath

    def graphs_compiled(module, set_prob):
        graphs = []

        def backend(graph_module, example_inputs):
            graphs.append(graph_module)
            return graph_module.forward
        torch._dynamo.reset()
        compiled = torch.compile(module.train(), backend=backend)
        for prob in (0.05, 0.1, 0.15):  # epochs 1..3 of the ramp
            set_prob(prob)
            compiled(torch.ones(4, 2, 3, 3))
        return len(graphs)

    ours = torch.nn.Sequential(DropPath(0.0))
    assert graphs_compiled(ours, lambda p: set_drop_path_prob(ours, p)) == 1
    nni = NNIDropPath(0.0)
    assert graphs_compiled(nni, lambda p: setattr(nni, 'drop_prob', p)) == 3  # what the trial had: one a value
