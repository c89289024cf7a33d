"""Is a one-shot search's exported cell decided by its architecture weights, or still noise?

Every epoch the search exports each edge's op of highest weight. Early on, and in a search too
short for its architecture learning rate, those weights sit near uniform: the export is then an
argmax over differences that the next batches can flip, and the cell is as good as a random one.
Three figures per epoch say which it is:
    entropy ratio    the edges' mean entropy over their mean uniform entropy (1: nothing learnt)
    top-2 gap        the median over edges of (highest - second highest) softmax weight
    changed          exported choices that differ from the previous epoch's
"""
import math
import statistics

# Below this median gap between an edge's two strongest ops (in softmax probability), a few steps of
# the architecture optimizer can reorder them: the export is noise. A uniform edge gives 0. The
# entropy is reported, not judged: on NAS-Bench-201 cells that rank in the table's top 10 were
# exported at 99% of the uniform entropy, with gaps of 0.02-0.05 that held for epochs.
NOISE_GAP = 0.02


def entropy(distribution):
    """In nats; log(8) = 2.079 for an edge still undecided between its 8 ops."""
    return -sum(p * math.log(p) for p in distribution.values() if p > 0)


def top2_gap(distribution):
    first, second = sorted(distribution.values(), reverse=True)[:2]
    return first - second


def changed_choices(arch, previous):
    """How many of the architecture's choices differ from `previous` (None: the first epoch)."""
    return None if previous is None else sum(arch[key] != previous.get(key) for key in arch)


def diagnose(probs, arch, previous=None):
    """{'entropy_ratio', 'top2_gap', 'changed', 'choices', 'verdict'} for an epoch's edge softmaxes
    `probs` ({edge: {op: p}}) and exported `arch`; `previous`: the last epoch's arch.
    verdict: 'noise' (the edges' two strongest ops within NOISE_GAP), 'moving' (separated, but the
    export still changes) or 'settled'."""
    ratio = (sum(entropy(p) for p in probs.values()) / sum(math.log(len(p)) for p in probs.values()))
    gap = statistics.median(top2_gap(p) for p in probs.values())
    changed = changed_choices(arch, previous)
    if gap < NOISE_GAP:
        verdict = 'noise'
    elif changed:
        verdict = 'moving'
    else:
        verdict = 'settled'
    return {'entropy_ratio': ratio, 'top2_gap': gap, 'changed': changed, 'choices': len(arch), 'verdict': verdict}


VERDICTS = {
    'noise': 'the exported cell is still noise: on most edges the two strongest ops are within '
             f'{NOISE_GAP} of each other, so the export is as good as a random cell (search longer, or raise '
             '--arch_lr)',
    'moving': 'the weights have separated but the export still changes between epochs',
    'settled': 'the export is decided by the weights and did not change since the last epoch',
}


def describe(diagnosis):
    """One line for the log."""
    changed = diagnosis['changed']
    moved = 'first epoch' if changed is None else f'{changed} of {diagnosis["choices"]} choices changed'
    return (f'architecture weights: entropy {100 * diagnosis["entropy_ratio"]:.1f}% of uniform, median top-2 gap '
            f'{diagnosis["top2_gap"]:.3f}, {moved}: {VERDICTS[diagnosis["verdict"]]}')
