"""DARTS-PT's perturbation-based selection (Wang et al. 2021, "Rethinking Architecture Selection in
Differentiable NAS", https://arxiv.org/abs/2108.04392): the cell is read from what each op does for
the trained supernet, not from its architecture weight.

DARTS exports each edge's op of largest softmax weight. That weight need not say how much the op
matters: the parameter-free skip_connect gains weight because it carries the gradient, and a
supernet trained with its weights held uniform (DARTS-PT's "fixed alpha") says nothing by its
weights at all. DARTS-PT asks the supernet instead, one edge at a time, in a random order:
    1. for each op of the edge, take the op out of the mixture (its weight 0, the others unchanged)
       and measure the supernet's accuracy on the held-out architecture half;
    2. the edge keeps the op whose removal costs the most accuracy (the zero op, whose removal changes
       nothing, is measured and kept only with --export_none): its mixture becomes that op alone;
    3. the supernet's weights train on for --select_tune_epochs at a tenth of the search's initial
       learning rate, so that the network adapts to the decided edge before the next one is judged.
With --select_once every edge is judged on the trained supernet as it is, none decided before
another is measured and nothing tuned (DARTS-PT's code calls this a "once" projection): a decided
edge's op alone, in place of the mixture whose scale the later layers learned, can cost a small
supernet half its accuracy, and one tuning epoch does not recover it.

This module works on any NNI one-shot supernet whose mixed layers (an edge each) hold `_arch_alpha`
and `_softmax`; cells that share an edge's label are decided together.
"""
import random

import torch

from .augment import BatchLoader
from .training import log


class ProjectedSoftmax(torch.nn.Module):
    """An edge's op weights as the selection sees them: the softmax of its architecture weights,
    with one op's weight set to 0 while its removal is measured, or one op alone once decided."""

    def __init__(self, label, state):
        super().__init__()
        self.label, self.state = label, state

    def forward(self, alpha):
        decided = self.state['decided'].get(self.label)
        if decided is not None:
            return torch.nn.functional.one_hot(torch.tensor(decided, device=alpha.device), len(alpha)).to(alpha.dtype)
        weights = torch.softmax(alpha, -1)
        if self.state['removed'] and self.state['removed'][0] == self.label:
            keep = torch.ones_like(weights)
            keep[self.state['removed'][1]] = 0
            weights = weights * keep
        return weights


def mixed_edges(supernet):
    """{label: [op names]} of the supernet's mixed layers, and the state their ProjectedSoftmax share,
    swapped in place of each layer's softmax."""
    state = {'decided': {}, 'removed': None}
    edges = {}
    for module in supernet.modules():
        if isinstance(getattr(module, '_arch_alpha', None), torch.nn.Parameter):
            module._softmax = ProjectedSoftmax(module.label, state)
            edges[module.label] = list(module.names)
    return dict(sorted(edges.items())), state


@torch.no_grad()
def accuracy(supernet, loader):
    """Percent correct over `loader`, BatchNorm on each batch's own statistics as in training (the
    running statistics mix all of the supernet's paths); the running statistics are left as they were."""
    saved = {name: buffer.clone() for name, buffer in supernet.named_buffers()}
    supernet.train()
    correct = seen = 0
    for images, labels in loader:
        correct += (supernet(images).argmax(1) == labels).sum().item()
        seen += len(labels)
    for name, buffer in supernet.named_buffers():
        buffer.copy_(saved[name])
    return 100 * correct / seen


def tune(supernet, criterion, loader, epochs, lr, cfg):
    """The supernet's weights (not its architecture weights) trained on for `epochs` at a constant `lr`."""
    params = [p for name, p in supernet.named_parameters() if '_arch_alpha' not in name and p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    supernet.train()
    for _ in range(epochs):
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            criterion(supernet(images), labels).backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()


def select(supernet, criterion, weights_loader, held_out_images, cfg):
    """The cell DARTS-PT selects, as {label: op}, and a record of every measurement:
    [{'edge', 'supernet_accuracy', 'accuracy_without': {op: percent}, 'chosen'}] in decision order.
    `held_out_images`: the images the accuracies are measured on, unaugmented (a Split, or the search's
    architecture BatchLoader, which holds its split's tensors); `weights_loader`: the tuning batches."""
    edges, state = mixed_edges(supernet)
    held_out = BatchLoader(held_out_images, max(cfg.batch_size, 256), held_out_images.images.device)
    order = list(edges)
    random.Random(cfg.seed).shuffle(order)
    record = []
    whole = None
    for done, label in enumerate(order, start=1):
        if whole is None or not cfg.select_once:  # once: the supernet is the same for every edge
            whole = accuracy(supernet, held_out)
        without = {}
        # Taking out the zero op changes nothing: it is measured (and can be chosen) only where the
        # export may choose it, which saves a pass over the held-out images an edge.
        for index, op in enumerate(edges[label]):
            if op != 'none' or cfg.export_none:
                state['removed'] = (label, index)
                without[op] = round(accuracy(supernet, held_out), 2)
        state['removed'] = None
        chosen = min(without, key=without.get)
        if not cfg.select_once:
            state['decided'][label] = edges[label].index(chosen)
        record.append({'edge': label, 'supernet_accuracy': round(whole, 2), 'accuracy_without': without,
                       'chosen': chosen})
        log(f'  selection {done}/{len(order)}: {label} -> {chosen} (supernet {whole:.2f}%; without each op: '
            + ', '.join(f'{op} {acc:.2f}' for op, acc in without.items()) + ')')
        if done < len(order) and cfg.select_tune_epochs and not cfg.select_once:
            tune(supernet, criterion, weights_loader, cfg.select_tune_epochs, cfg.initial_lr / 10, cfg)
    return {step['edge']: step['chosen'] for step in sorted(record, key=lambda step: step['edge'])}, record
