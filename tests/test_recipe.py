"""The training recipe's parts (cifar_automl/recipe.py, config.RECIPE_PARTS): each does what it says,
and the trial learns with each one switched off as well as with all on."""
import json

import pytest
import torch
from torch import nn

from cifar_automl import config, recipe, trial
from cifar_automl.augment import BatchLoader
from cifar_automl.data import Split
from cifar_automl.models import build_model
from cifar_automl.training import Recipe, auto_batch_size, lr_at, predict

DIGITS = ['--dataset', 'digits', '--width', '8', '--log_frequency', '0']


def trial_metrics(tmp_path, args):
    assert trial.main(DIGITS + args + ['--output_dir', str(tmp_path)]) == 0
    return json.loads((tmp_path / 'metrics.json').read_text())


@pytest.mark.parametrize('part', ['all on'] + sorted(config.RECIPE_PARTS) + ['plain'])
def test_trial_learns_with_each_part_switched_off(tmp_path, part):
    if part == 'all on':
        args = []
    elif part == 'plain':  # every part off at once, with a learning rate a plain recipe can take
        args = ['--preset', 'plain', '--initial_lr', '0.05']
    else:
        args = [f'--{part}', str(config.RECIPE_PARTS[part])]
    metrics = trial_metrics(tmp_path, args + ['--epochs', '3'])
    assert metrics['history'][-1]['train_loss'] < metrics['history'][0]['train_loss']
    # Chance is 10%. Some parts are worth much on so short a run (bias_lr_scale 1 ended at 57%).
    assert metrics['default'] > 40 and metrics['test_acc'] > 40, metrics


def test_default_model_learns_digits_in_three_epochs(tmp_path):
    """The default recipe on a small dataset: the automatic batch size leaves enough steps an epoch."""
    metrics = trial_metrics(tmp_path, ['--width', '64', '--epochs', '3'])
    assert metrics['config']['batch_size'] == 32
    assert metrics['default'] >= 80 and {'test_acc', 'test_acc_tta', 'val_acc_tta'} <= set(metrics)


def test_automatic_batch_size_is_512_on_cifar_and_small_on_small_data():
    assert auto_batch_size(45000) == 512
    assert auto_batch_size(1200) == 32 and 1200 // 32 >= 32
    assert auto_batch_size(10000) == 256


def test_learning_rate_scales_with_the_batch_size(tmp_path):
    cfg = config.resolve(['--batch_size', '256'])
    model = build_model('airbench', width=8)
    half = Recipe(cfg, model, steps_per_epoch=10)
    assert half.lr(half.warmup_steps) == pytest.approx(cfg.initial_lr / 4)
    assert half.lr(half.total_steps - 1) == pytest.approx(cfg.ending_lr / 4)
    cfg.lr_batch_size = 0  # off: as given
    assert Recipe(cfg, model, 10).lr(half.warmup_steps) == pytest.approx(cfg.initial_lr)


def test_linear_schedule_warms_up_then_falls_in_a_straight_line():
    lrs = [lr_at(step, 100, 1.0, 0.1, warmup_steps=20, shape='linear') for step in range(100)]
    assert lrs[0] == pytest.approx(0.05) and lrs[19] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)
    steps = [a - b for a, b in zip(lrs[20:], lrs[21:])]
    assert steps == pytest.approx([steps[0]] * len(steps))


def test_whitening_layer_decorrelates_patches():
    images = torch.randn(200, 3, 8, 8) @ torch.randn(8, 8) + torch.randn(200, 3, 1, 1)  # correlated pixels
    layer = recipe.PatchWhitening()
    layer.fit(images)
    with torch.no_grad():
        out = nn.functional.conv2d(images, layer.weight)[:, :12]  # the 12 whitened directions
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = flat.T @ flat / len(flat)
    assert torch.allclose(covariance, torch.eye(12), atol=0.02)
    assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_batchnorm_settings_and_bias_learning_rate_groups():
    model = build_model('airbench', width=8)
    recipe.configure_batchnorm(model, 0.4, freeze_scale=True)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.momentum == 0.4 and not m.weight.requires_grad for m in norms)
    biases, others = recipe.parameter_groups(model, 1e-3, 64.0)
    assert {id(p) for p in biases['params']} == {id(m.bias) for m in norms}
    assert biases['lr_scale'] == 64 and biases['weight_decay'] == pytest.approx(1e-3 / 64)
    assert all(p.requires_grad for p in others['params'])
    ids = {id(p) for p in others['params']}
    assert id(model.whiten.bias) in ids and id(model.whiten.weight) not in ids


def test_orthogonalize_brings_every_singular_value_near_one():
    torch.manual_seed(0)
    matrix = torch.randn(16, 72) @ torch.diag(torch.logspace(-2, 1, 72))  # singular values over 3 decades
    for wide_or_tall in (matrix, matrix.T):
        singular = torch.linalg.svdvals(recipe.orthogonalize(wide_or_tall))
        assert singular.min() > 0.3 and singular.max() < 1.6, singular  # Muon's quintic: about [0.5, 1.5]


def test_muon_moves_the_filters_by_orthogonal_steps_of_fixed_norm_and_the_rest_by_sgd():
    cfg = config.resolve(['--optimizer', 'muon', '--batch_size', '1024', '--muon_lr', '0.1'])
    model = build_model('airbench', width=8)
    schedule = Recipe(cfg, model, steps_per_epoch=10)
    muon = [g for g in schedule.optimizer.param_groups if g['muon']]
    assert len(muon) == 1 and all(p.dim() == 4 and p.requires_grad for p in muon[0]['params'])
    assert muon[0]['weight_decay'] == 0 and muon[0]['momentum'] == cfg.muon_momentum
    assert cfg.initial_lr * muon[0]['lr_scale'] == pytest.approx(0.1)  # muon_lr at the peak
    filters, head = model.groups[1].conv2.weight, model.head.weight
    assert any(p is head for g in schedule.optimizer.param_groups if not g['muon'] for p in g['params'])
    before = {'filters': filters.detach().clone(), 'head': head.detach().clone()}
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for group in schedule.optimizer.param_groups:  # the schedule's peak: initial_lr at batch 1024
        group['lr'] = cfg.initial_lr * group['lr_scale']
    schedule.loss(model(images), labels).backward()
    head_grad = head.grad.clone()
    schedule.optimizer.step()
    with torch.no_grad():
        step = filters - before['filters'] * filters.shape[0] ** 0.5 / before['filters'].norm()
    singular = torch.linalg.svdvals(step.flatten(1) / 0.1)
    assert singular.min() > 0.3 and singular.max() < 1.6
    decayed = head_grad + cfg.weight_decay * before['head']
    assert torch.allclose(head, before['head'] - cfg.initial_lr * (1 + cfg.momentum) * decayed, atol=1e-6)  # SGD


def test_trial_learns_with_muon(tmp_path):
    metrics = trial_metrics(tmp_path, ['--optimizer', 'muon', '--epochs', '3'])
    assert metrics['history'][-1]['train_loss'] < metrics['history'][0]['train_loss']
    assert metrics['default'] > 40 and metrics['test_acc'] > 40, metrics


def test_dirac_init_makes_each_3x3_conv_start_as_the_identity():
    model = build_model('airbench', width=8)
    recipe.dirac_init(model)
    conv = model.groups[1].conv2  # 32 -> 32 channels
    x = torch.randn(2, 32, 5, 5)
    assert torch.allclose(conv(x), x, atol=1e-6)


def test_lookahead_ends_on_the_average_and_pulls_weights_back():
    model = nn.Linear(2, 2, bias=False)
    lookahead = recipe.Lookahead(model, decay=0.9, total_steps=10, every=5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    lookahead.after_step(4)  # not a multiple of 5: nothing happens
    assert torch.equal(model.weight, start + 1)
    lookahead.after_step(5)
    decay = 0.9 ** 5 * 0.5 ** 3
    assert torch.allclose(model.weight, start + (1 - decay))
    assert torch.equal(model.weight, lookahead.average['weight'])


def test_alternating_flip_shows_each_image_both_ways_over_two_epochs():
    images = torch.arange(16 * 3 * 32 * 32, dtype=torch.uint8).view(16, 3, 32, 32)
    split = Split(images, torch.arange(16))
    loader = BatchLoader(split, 16, 'cpu', train=True, flip=True, alternate_flip=True)
    seen = []
    for _ in range(2):
        batch, labels = next(iter(loader))
        first_columns = batch[labels.argsort(), 0, 0, 0]
        seen.append(first_columns)
    assert (seen[0] != seen[1]).all()  # mirrored the other way in the second epoch, every image


def test_tta_off_is_plain_evaluation_and_symmetric_models_are_unchanged():
    torch.manual_seed(0)
    model = build_model('airbench', width=8).eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(predict(model, images, tta=0), model(images))
        # Images of one colour each look the same mirrored and shifted: TTA changes nothing.
        uniform = torch.randn(4, 3, 1, 1).expand(4, 3, 32, 32).contiguous()
        for level in (1, 2):
            assert torch.allclose(predict(model, uniform, tta=level), model(uniform), atol=1e-5)


def test_plain_preset_switches_every_part_off():
    cfg = config.resolve(['--preset', 'plain'])
    assert all(getattr(cfg, name) == off for name, off in config.RECIPE_PARTS.items())
    assert config.resolve(['--preset', 'plain', '--lookahead', '0.9']).lookahead == 0.9
