"""The DARTS search as a user runs it: `python nas/search_darts.py`."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
from PIL import Image

from cifar_automl import darts_search, space_darts
from cifar_automl.cell_plot import cell_edges, plot_cells
from cifar_automl.data import load_digits
from conftest import REPO, write_cifar_batches

# About 2 s a step on 2 busy cores: two steps an epoch (64 images per half, batch 32).
TINY = ['--dataset', 'digits', '--subset', '128', '--width', '4', '--num_cells', '3', '--batch_size', '32',
        '--threads', '1', '--log_frequency', '1', '--device', 'cpu']
TINY_WIDTH, TINY_CELLS = 4, 3
ARCH_KEYS = {f'{cell}/{kind}_{node}_{edge}' for cell in ('normal', 'reduce') for kind in ('op', 'input')
             for node in (2, 3, 4, 5) for edge in (0, 1)}


def start_search(args, home):
    """The search in its own process, its HOME a temporary one so that NNI's experiment manifest
    (~/nni-experiments/.experiment) is not the user's."""
    return subprocess.Popen([sys.executable, str(REPO / 'nas' / 'search_darts.py'), *args], cwd=REPO,
                            env={**os.environ, 'HOME': str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def run_search(args, home, timeout=300):
    process = start_search(args, home)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def kill_after_first_checkpoint(process, checkpoint, timeout=300):
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, 'no checkpoint written'
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # as a crash or a preempted job would
    process.communicate()


def rebuild_and_train_one_step(arch):
    """The fixed network of `arch`, as retrain/retrain.py builds it, trains a step."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        from nni.nas.hub.pytorch import DARTS
        from nni.nas.space import model_context
    with model_context(arch):
        net = DARTS(width=TINY_WIDTH, num_cells=TINY_CELLS, dataset='cifar')
    train, _ = load_digits()
    images, labels = train.images[:16].float() / 255, train.labels[:16]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    loss = torch.nn.functional.cross_entropy(net(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


def test_tiny_search_exports_every_epoch_and_resumes_after_a_kill(tmp_path):
    out = tmp_path / 'search'
    epochs = 3
    # Not the defaults, to show that NNI's optimizers take the flags.
    optimizers = ['--momentum', '0.8', '--arch_beta1', '0.6', '--arch_weight_decay', '0.002', '--ending_lr', '0.002']
    # --max_skip 0: no skip_connect in any normal cell written
    args = TINY + optimizers + ['--epochs', str(epochs), '--max_skip', '0', '--output_dir', str(out)]
    process = start_search(args, tmp_path)
    kill_after_first_checkpoint(process, out / darts_search.CHECKPOINT_FILE)
    saved_epoch = torch.load(out / darts_search.CHECKPOINT_FILE, weights_only=False)['epoch']
    assert saved_epoch < epochs - 1, 'the search finished before it was killed'
    first_export = (out / f'epoch_{saved_epoch}.json').stat().st_mtime_ns

    code, output = run_search(['--resume', '--output_dir', str(out), '--threads', '1'], tmp_path)
    assert code == 0, output
    assert f'continuing at epoch {saved_epoch + 2}/{epochs}' in output
    assert f'epoch {saved_epoch + 1}/{epochs} step' not in output  # the saved epoch is not searched again
    assert (out / f'epoch_{saved_epoch}.json').stat().st_mtime_ns == first_export
    assert 'ETA' in output and 'weights loss' in output and 'arch loss' in output

    archs = [json.loads((out / f'epoch_{epoch}.json').read_text()) for epoch in range(epochs)]
    final = json.loads((out / 'final.json').read_text())
    assert final == archs[-1]
    for epoch, arch in enumerate(archs):
        assert set(arch) == ARCH_KEYS
        probs = json.loads((out / f'epoch_{epoch}_probs.json').read_text())
        assert len(probs) == 2 * 14 and all(abs(sum(p.values()) - 1) < 1e-5 for p in probs.values())
        with Image.open(out / f'epoch_{epoch}.png') as png:
            assert png.width > png.height > 100
        rebuild_and_train_one_step(arch)
    assert not (out / f'epoch_{epochs}.json').exists()
    checkpoint = torch.load(out / darts_search.CHECKPOINT_FILE, weights_only=False)
    weights, arch = [state['param_groups'][0] for state in checkpoint['optimizer_states']]
    assert (weights['momentum'], weights['weight_decay']) == (0.8, 3e-4)
    assert weights['lr'] == pytest.approx(0.002)  # the cosine's end, reached over the resumed run
    assert checkpoint['lr_schedulers'][0]['last_epoch'] == epochs * 2  # steps: 2 per epoch
    assert (arch['lr'], arch['betas'], arch['weight_decay']) == (3e-4, (0.6, 0.999), 0.002)
    assert list((out / 'tensorboard').glob('events.out.tfevents.*'))
    assert (out / 'nni').is_dir()  # NNI's experiment directory is the search's, not ~/nni-experiments/<id>
    assert 'Sorted weights' not in output
    counts = json.loads((out / darts_search.SKIP_COUNTS_FILE).read_text())
    assert [c['epoch'] for c in counts] == list(range(epochs))  # the resumed search kept the history
    for arch, count in zip(archs, counts):
        assert count['normal'] == space_darts.skip_count(arch, 'normal') == 0
        assert count['reduce'] == space_darts.skip_count(arch, 'reduce')
    assert 'skip_connect edges: normal 0' in output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set()
    for events in (out / 'tensorboard').glob('events.out.tfevents.*'):
        tags |= set(EventAccumulator(str(events)).Reload().Tags()['scalars'])
    assert {'skip_connect/normal', 'skip_connect/searched', 'skip_connect/reduce', 'diagnostics/entropy_ratio'} <= tags


@pytest.mark.slow
def test_gumbel_search_on_a_cifar_format_directory(tmp_path):
    write_cifar_batches(tmp_path / 'data', per_batch=26)
    out = tmp_path / 'search'
    args = TINY + ['--dataset', 'cifar10', '--data_dir', str(tmp_path / 'data'), '--subset', '128',
                   '--strategy', 'gumbel', '--epochs', '2', '--output_dir', str(out)]
    code, output = run_search(args, tmp_path)
    assert code == 0, output
    assert 'DARTS search (gumbel) on cifar10' in output
    for name in ('epoch_0.json', 'epoch_1.json', 'final.json', 'final.png'):
        assert (out / name).is_file()
    rebuild_and_train_one_step(json.loads((out / 'final.json').read_text()))


def write_resumable(out, **changes):
    cfg = darts_search.SearchConfig(**changes)
    out.mkdir()
    (out / darts_search.CONFIG_FILE).write_text(json.dumps(vars(cfg)))
    (out / darts_search.CHECKPOINT_FILE).write_bytes(b'')
    return out


@pytest.mark.parametrize('argv, needle', [
    (['--strategy', 'enas'], "--strategy: strategy='enas' is not allowed; expected one of 'darts', 'gumbel'"),
    (['--num_cells', '2'], '--num_cells'),
    (['--width', '0'], '--width'),
    (['--epochs', '0'], '--epochs'),
    (['--ending_lr', '0.1'], '--ending_lr'),
    (['--dataset', 'digits', '--subset', '40', '--batch_size', '32'], '--batch_size 32 exceeds the 20 images'),
    (['--dataset', 'digits', '--subset', '100000'], '--subset 100000 exceeds'),
    (['--resume'], '--resume needs --output_dir'),
    (['--resume', '--output_dir', '{tmp}/nothing'], 'search_config.json is missing'),
    (['--precision', 'fp16'], "--precision fp16 with --grad_clip > 0: NNI's DARTS clips fp16 gradients before they "
                              "are unscaled"),
])
def test_bad_input_is_refused_before_the_search(argv, needle, tmp_path, capsys):
    argv = [arg.replace('{tmp}', str(tmp_path)) for arg in argv]
    if '--resume' not in argv:
        argv += ['--output_dir', str(tmp_path / 'out')]
    assert darts_search.main(argv) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('precision, grad_clip, lightning', [
    ('auto', 5.0, '32-true'),  # fp16 would clip gradients still multiplied by the loss scale
    ('auto', 0.0, '16-mixed'),  # nothing is clipped, so fp16 is safe
    ('bf16', 5.0, 'bf16-mixed'),  # no loss scale to undo (an emulated bf16, as asked)
])
def test_a_gpu_without_bf16_never_clips_fp16_gradients_before_they_are_unscaled(monkeypatch, precision, grad_clip,
                                                                                  lightning):
    """NNI's DARTS clips the weights' gradients after the backward, before Lightning's optimizer step
    unscales them: under fp16's loss scale the clip would act on gradients thousands of times too large."""
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    cfg = darts_search.resolve(['--precision', precision, '--grad_clip', str(grad_clip)])
    assert darts_search.lightning_precision(cfg, torch.device('cuda')) == lightning


def test_missing_cifar_batch_is_refused(tmp_path, capsys):
    write_cifar_batches(tmp_path / 'data')
    (tmp_path / 'data' / 'cifar-10-batches-py' / 'data_batch_3').unlink()
    assert darts_search.main(['--data_dir', str(tmp_path / 'data'), '--output_dir', str(tmp_path / 'out')]) == 2
    assert 'data_batch_3 is missing' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_resume_refuses_a_different_search(tmp_path, capsys):
    out = write_resumable(tmp_path / 'out', width=16)
    assert darts_search.main(['--resume', '--output_dir', str(out), '--width', '8']) == 2
    assert '--width 8 differs from the search being resumed (16' in capsys.readouterr().err


def test_resume_takes_the_saved_config_and_new_run_settings(tmp_path):
    out = write_resumable(tmp_path / 'out', width=8, epochs=7, threads=2)
    cfg = darts_search.resolve(['--resume', '--output_dir', str(out), '--threads', '1', '--width', '8'])
    assert (cfg.width, cfg.epochs, cfg.threads) == (8, 7, 1)


def test_defaults_are_the_darts_papers_cifar10_search():
    cfg = darts_search.resolve([])
    assert (cfg.num_cells, cfg.width, cfg.epochs, cfg.batch_size) == (8, 16, 50, 64)
    assert (cfg.initial_lr, cfg.ending_lr, cfg.momentum, cfg.weight_decay, cfg.grad_clip) == (
        0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (cfg.arch_lr, cfg.arch_beta1, cfg.arch_beta2, cfg.arch_weight_decay) == (3e-4, 0.5, 0.999, 1e-3)


def test_halves_split_the_training_images_one_to_one_and_class_balanced():
    weights, arch, num_classes = darts_search.search_splits(darts_search.resolve(['--dataset', 'digits']))
    assert len(weights) == len(arch) == 750  # digits' 1500 training images; its 297 test images are never seen
    assert arch.labels.bincount().tolist() == [75] * 10  # the architecture half is balanced; the weights
    assert weights.labels.bincount().min() >= 70  # half has the rest of digits' slightly unequal classes
    weights, arch, _ = darts_search.search_splits(darts_search.resolve(['--dataset', 'digits', '--subset', '128']))
    assert len(weights) == len(arch) == 64


def test_cell_plot_draws_every_edge_of_both_cells(tmp_path):
    arch = {}
    for cell in ('normal', 'reduce'):
        for node in (2, 3, 4, 5):
            for edge in (0, 1):
                arch[f'{cell}/op_{node}_{edge}'] = 'sep_conv_3x3' if edge else 'skip_connect'
                arch[f'{cell}/input_{node}_{edge}'] = [node - 1 - edge]
    assert cell_edges(arch, 'reduce')[:2] == [(1, 2, 'skip_connect'), (0, 2, 'sep_conv_3x3')]
    plot_cells(arch, tmp_path / 'cells.png', 'title')
    with Image.open(tmp_path / 'cells.png') as png:
        assert png.width > 2 * png.height
    assert [p.name for p in tmp_path.iterdir()] == ['cells.png']  # no partial file left behind


# ---------------------------------------------------------------- skip-connection collapse

def skip_heavy_arch_and_probs():
    """A normal cell whose eight edges are all skip_connect, each edge's softmax favouring skip by a
    different margin; the reduction cell all max_pool_3x3."""
    arch, probs = {}, {}
    for cell in ('normal', 'reduce'):
        for node in (2, 3, 4, 5):
            for slot, source in enumerate((0, 1)):
                arch[f'{cell}/op_{node}_{slot}'] = 'skip_connect' if cell == 'normal' else 'max_pool_3x3'
                arch[f'{cell}/input_{node}_{slot}'] = [source]
            for source in range(node):
                skip = 0.30 + 0.01 * node + 0.001 * source  # node 5's edges hold skip strongest
                rest = (1 - skip) / 7
                probs[f'{cell}/{node}_{source}'] = {op: rest for op in (
                    'max_pool_3x3', 'avg_pool_3x3', 'sep_conv_3x3', 'sep_conv_5x5', 'dil_conv_3x3', 'dil_conv_5x5')}
                probs[f'{cell}/{node}_{source}'].update({'skip_connect': skip, 'none': rest + 0.05})
                # the best op after skip (and the zero op, never chosen): a different one per node
                probs[f'{cell}/{node}_{source}'][('sep_conv_3x3', 'dil_conv_5x5', 'avg_pool_3x3', 'sep_conv_5x5')[
                    node - 2]] += 0.01
    return arch, probs


def test_skip_cap_keeps_the_strongest_skips_and_gives_the_others_their_best_op():
    arch, probs = skip_heavy_arch_and_probs()
    capped, changes = darts_search.cap_skips(arch, probs, 2, space_darts.skip_edges(arch))
    assert space_darts.skip_count(arch, 'normal') == 8 and space_darts.skip_count(capped, 'normal') == 2
    # node 5's two edges have the highest skip weights: they stay; every other edge keeps its input
    # and takes its own best op other than skip_connect and the zero op.
    assert capped['normal/op_5_0'] == capped['normal/op_5_1'] == 'skip_connect'
    assert [capped[f'normal/op_{node}_{slot}'] for node in (2, 3, 4) for slot in (0, 1)] == [
        'sep_conv_3x3', 'sep_conv_3x3', 'dil_conv_5x5', 'dil_conv_5x5', 'avg_pool_3x3', 'avg_pool_3x3']
    assert all(capped[key] == arch[key] for key in arch if 'input' in key or key.startswith('reduce/'))
    assert len(changes) == 6 and 'normal/2_0: sep_conv_3x3' in changes
    skips = space_darts.skip_edges(arch)
    assert darts_search.cap_skips(arch, probs, 8, skips) == (arch, [])  # under the cap: unchanged
    assert space_darts.skip_count(darts_search.cap_skips(arch, probs, 0, skips)[0], 'normal') == 0
    from cifar_automl.arch_files import parse_arch
    parse_arch(json.dumps(capped), 'capped')  # still a valid cell for the retrain


@pytest.mark.parametrize('counts, patience, keep', [
    ([1, 1, 2, 2], 2, 1),   # grown for 2 epochs in a row: keep the epoch before the growth
    ([1, 1, 2, 1], 2, None),  # back down: no stop
    ([2, 1, 2, 2], 2, 1),   # the fewest so far (1 at epoch 1), not the first count, is the reference
    ([0, 3, 3, 3], 0, None),  # 0: never stops
    ([2, 2, 2], 1, None),   # a constant count never grows
])
def test_skip_patience_stops_when_the_normal_cells_skip_count_keeps_growing(counts, patience, keep):
    assert darts_search.stop_epoch(counts, patience) == keep
    history = [{'epoch': epoch, darts_search.SEARCHED: count} for epoch, count in enumerate(counts)]
    assert darts_search.chosen_epoch(history, patience) == (len(counts) - 1 if keep is None else keep)


def test_cifar_cpu_preset_is_the_hour_long_cpu_search_and_flags_override_it():
    cfg = darts_search.resolve(['--preset', 'cifar_cpu'])
    assert (cfg.dataset, cfg.subset, cfg.width, cfg.num_cells, cfg.epochs, cfg.batch_size, cfg.max_skip) == (
        'cifar10', 5000, 8, 5, 10, 64, 2)
    assert darts_search.resolve(['--preset', 'cifar_cpu', '--epochs', '3', '--max_skip', '-1']).epochs == 3
    assert darts_search.resolve([]).max_skip == -1 and darts_search.resolve([]).skip_patience == 0


def test_help_is_complete_and_says_what_applies_on_cpu():
    text = ' '.join(darts_search.build_parser().format_help().split())
    assert 'with NNI 3.0: `python nas/search_darts.py`.' in text  # the description's whole first paragraph
    assert 'fp32 on CPUs' in text and 'bf16 on GPUs and on CPUs' not in text
    assert 'NHWC memory format on GPUs (ignored on CPU' in text
    assert text.count('outputs/darts-<time>') == 1 and "(default: '')" not in text


def test_resume_refuses_a_search_that_finished_its_epochs(tmp_path):
    out = write_resumable(tmp_path / 'out', epochs=2)
    (out / darts_search.SKIP_COUNTS_FILE).write_text(json.dumps([{'epoch': 0}, {'epoch': 1}]))
    with pytest.raises(darts_search.ConfigError, match='finished all its 2 epochs; nothing is left to continue'):
        darts_search.resolve(['--resume', '--output_dir', str(out)])


@pytest.mark.parametrize('epochs_done, argv, needle', [
    (1, [], 'finished 1 of its 2 epochs; continue it first with --resume'),
    (2, ['--width', '4'], "--width 4 differs from the search that trained the supernet (8 in"),
    (2, ['--select', 'argmax'], 'give --select perturbation'),
    (2, ['--output_dir', 'SOURCE'], 'give another --output_dir, so that its selection is kept'),
    (2, ['--resume'], '--resume and --select_from'),
])
def test_select_from_refuses_what_would_not_select_from_the_finished_supernet(epochs_done, argv, needle, tmp_path):
    source = write_resumable(tmp_path / 'out', space='nb201', epochs=2, width=8, select='perturbation')
    (source / darts_search.SKIP_COUNTS_FILE).write_text(json.dumps([{'epoch': e} for e in range(epochs_done)]))
    argv = [str(source) if arg == 'SOURCE' else arg for arg in argv]
    if '--output_dir' not in argv:
        argv += ['--output_dir', str(tmp_path / 'again')]
    with pytest.raises(darts_search.ConfigError, match=re.escape(needle)):
        darts_search.resolve(['--select_from', str(source), *argv])


def test_select_from_keeps_the_searchs_settings_and_takes_the_selection_flags(tmp_path):
    source = write_resumable(tmp_path / 'out', space='nb201', epochs=2, width=8, seed=3, select='perturbation')
    (source / darts_search.SKIP_COUNTS_FILE).write_text(json.dumps([{'epoch': 0}, {'epoch': 1}]))
    cfg = darts_search.resolve(['--select_from', str(source), '--select_once', 'true', '--export_none', 'true',
                                '--threads', '1', '--output_dir', str(tmp_path / 'again')])
    assert (cfg.width, cfg.seed, cfg.epochs, cfg.space) == (8, 3, 2, 'nb201')  # the same supernet, the same halves
    assert cfg.select_once and cfg.export_none and cfg.threads == 1 and not cfg.resume


def test_perturbation_decides_each_edges_op_then_each_nodes_two_edges_on_nnis_darts_supernet():
    from nni.nas.strategy import DARTS
    from cifar_automl import perturbation
    from cifar_automl.data import Split
    cfg = darts_search.resolve(['--width', str(TINY_WIDTH), '--num_cells', str(TINY_CELLS), '--batch_size', '32',
                                '--select', 'perturbation', '--select_once', 'true', '--select_images', '8'])
    torch.manual_seed(0)
    supernet = DARTS().mutate_model(space_darts.build(cfg, 10))
    held_out = Split(torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (48,)))
    edge_ops, record = perturbation.select(supernet, torch.nn.CrossEntropyLoss(), None, held_out, cfg,
                                           space_darts.node_inputs, space_darts.INPUTS_PER_NODE)
    ops, nodes = record[:28], record[28:]
    ops_of_an_edge = {'max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5',
                      'dil_conv_3x3', 'dil_conv_5x5'}  # the zero op's removal changes nothing: not measured
    assert sorted(step['edge'] for step in ops) == sorted(f'{cell}/{node}_{source}' for cell in ('normal', 'reduce')
                                                          for node in range(2, 6) for source in range(node))
    for step in ops:
        assert set(step['accuracy_without']) == set(step['loss_without']) == ops_of_an_edge
        # The op whose removal costs the most accuracy; equal accuracies, the larger loss without it.
        assert step['chosen'] == min(ops_of_an_edge, key=lambda op: (step['accuracy_without'][op],
                                                                      -step['loss_without'][op]))
        assert all(acc % 12.5 == 0  # measured on the first 8 images
                   for acc in step['accuracy_without'].values())
    # Node 2 has two incoming edges and keeps both; nodes 3, 4 and 5 of both cells choose.
    assert sorted(step['node'] for step in nodes) == [f'{cell}/{node}' for cell in ('normal', 'reduce')
                                                      for node in (3, 4, 5)]
    assert len({step['supernet_accuracy'] for step in record}) == 1  # --select_once: one supernet throughout
    arch = space_darts.from_edge_ops(edge_ops)
    assert set(arch) == ARCH_KEYS
    for step in nodes:
        without, loss = step['accuracy_without_edge'], step['loss_without_edge']
        ranked = sorted(without, key=lambda edge: (without[edge], -loss[edge]))
        assert step['kept'] == sorted(ranked[:2])
        cell, node = step['node'].split('/')
        assert [arch[f'{cell}/input_{node}_{slot}'][0] for slot in (0, 1)] == sorted(
            int(edge.rsplit('_', 1)[1]) for edge in ranked[:2])
    for slot in (0, 1):
        assert arch[f'normal/input_2_{slot}'] == [slot] and arch[f'normal/op_2_{slot}'] == edge_ops[f'normal/2_{slot}']
    rebuild_and_train_one_step(arch)


def test_a_darts_cell_as_an_op_per_supernet_edge_and_back():
    from cifar_automl.random_cells import random_cells
    for arch in random_cells(4, seed=0):
        edge_ops = {f'{cell}/{node}_{source}': 'none' for cell in ('normal', 'reduce') for node in range(2, 6)
                    for source in range(node)}
        for cell in ('normal', 'reduce'):
            for source, target, op in cell_edges(arch, cell):
                edge_ops[f'{cell}/{target}_{source}'] = op
        again = space_darts.from_edge_ops(edge_ops)
        assert {cell: sorted(cell_edges(again, cell)) for cell in ('normal', 'reduce')} == \
            {cell: sorted(cell_edges(arch, cell)) for cell in ('normal', 'reduce')}
    edge_ops['normal/5_4'] = 'sep_conv_3x3'  # a third edge into node 5
    with pytest.raises(ValueError, match='normal/5 keeps 3 edges'):
        space_darts.from_edge_ops(edge_ops)


@pytest.mark.slow
def test_tiny_darts_search_selects_by_perturbation_and_writes_the_cell(tmp_path):
    out = tmp_path / 'search'
    args = TINY + ['--epochs', '1', '--arch_warmup', '1', '--select', 'perturbation', '--select_once', 'true',
                   '--select_images', '8', '--output_dir', str(out)]
    code, output = run_search(args, tmp_path)
    assert code == 0, output
    selection = json.loads((out / darts_search.SELECTION_FILE).read_text())
    final = json.loads((out / 'final.json').read_text())
    assert final == selection['cell'] and set(final) == ARCH_KEYS
    assert len(selection['edges']) == 28 + 6
    assert 'on 8 architecture images, then each node\'s 2 edges whose removal costs the most' in output
    assert 'selection 34/34: ' in output and 'keeps' in output
    rebuild_and_train_one_step(final)
