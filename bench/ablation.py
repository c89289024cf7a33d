"""The training recipe's ablation: what each part is worth, measured by switching it off.

    python bench/ablation.py --data_dir DIR --out runs/ablation -- --preset cpu --subset 20000 --epochs 5

Runs `trial/main.py` once with the recipe as it is and once per part with that part at its off
value (config.RECIPE_PARTS), one after another, each in OUT/NAME. A run whose metrics.json exists is
not run again, so a stopped ablation continues where it was. Then prints a markdown table of the
test accuracy (plain and with test-time augmentation) and its change against the full recipe, and
writes it to OUT/ablation.md. Flags after `--` go to every run. Test-time augmentation is not a
run of its own (every run reports both accuracies), nor is lr_batch_size (off, the learning rate is
used as given for the batch: at the default batch of 512 that doubles it rather than removing a part).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cifar_automl.config import RECIPE_PARTS, ArgumentParser  # noqa: E402

NOT_RUN = {'tta', 'lr_batch_size'}
# run name: (what is switched off, its options). A part of several options switches them together.
PARTS = {
    'whiten': ('whitening', ['whiten']),
    'batchnorm': ('BatchNorm momentum 0.4, frozen scale, bias lr x64', ['bn_momentum', 'freeze_bn_scale',
                                                                        'bias_lr_scale']),
    'lookahead': ('lookahead', ['lookahead']),
    'schedule': ('warmup and linear decay (off: cosine to 0)', ['lr_schedule', 'warmup_epochs']),
    'alternate_flip': ('alternating flip', ['alternate_flip']),
    'translate': ('2-pixel translation (off: 4)', ['crop_padding']),
    'label_smoothing': ('label smoothing 0.2', ['label_smoothing']),
    'logit_scale': ('logit scale 1/9', ['logit_scale']),
    'dirac': ('Dirac init', ['dirac_init']),
    'plain': ('all of them (as --preset plain)', [name for name in RECIPE_PARTS if name not in NOT_RUN]),
}
OFF_EXTRA = {'lr_schedule': {'ending_lr': 0.0}}  # a plain cosine ends at 0
assert {name for _, names in PARTS.values() for name in names} | NOT_RUN == set(RECIPE_PARTS)


def off_flags(names):
    flags = []
    for name in names:
        flags += [f'--{name}', str(RECIPE_PARTS[name])]
        for extra, value in OFF_EXTRA.get(name, {}).items():
            flags += [f'--{extra}', str(value)]
    return flags


def main():
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data_dir', required=True, help='the directory holding cifar-10-batches-py')
    parser.add_argument('--out', default='runs/ablation', help='a directory per run, and ablation.md '
                        '(default: runs/ablation)')
    parser.add_argument('trial_flags', nargs='*', help='after --: flags for every run')
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for name in ['full', *PARTS]:
        label, options = PARTS.get(name, (None, []))
        run_dir = out / name
        if not (run_dir / 'metrics.json').exists():
            command = [sys.executable, str(REPO / 'trial' / 'main.py'), '--data_dir', args.data_dir,
                       '--output_dir', str(run_dir), '--log_frequency', '0', *args.trial_flags, *off_flags(options)]
            print(f'running {label or "the full recipe"}: {" ".join(command[2:])}', flush=True)
            subprocess.run(command, check=True, cwd=REPO)
        rows.append((label, json.loads((run_dir / 'metrics.json').read_text())))
    full = rows[0][1]
    lines = [f'Flags of every run: `{" ".join(args.trial_flags)}`', '',
             '| switched off | test acc | with TTA | change | change with TTA | training time |',
             '|---|---|---|---|---|---|']
    for label, metrics in rows:
        plain, tta = metrics['test_acc'], metrics.get('test_acc_tta', metrics['test_acc'])
        change = '' if label is None else f'{plain - full["test_acc"]:+.2f}'
        change_tta = '' if label is None else f'{tta - full.get("test_acc_tta", full["test_acc"]):+.2f}'
        lines.append(f'| {label or "nothing (the full recipe)"} | {plain:.2f}% | {tta:.2f}% | {change} | '
                     f'{change_tta} | {metrics["train_time"]:.0f} s |')
    table = '\n'.join(lines) + '\n'
    (out / 'ablation.md').write_text(table)
    print(table)


if __name__ == '__main__':
    main()
