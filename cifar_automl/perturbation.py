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
Where a node keeps only some of its incoming edges (the DARTS cell: two of its 2-5), the topology is
read the same way once every edge has its op, node by node in a random order: each incoming edge is
taken out whole, and the node keeps the edges whose removal costs the most; the others become the
zero op.
With --select_once every choice is judged on the trained supernet as it is, none decided before
another is measured and nothing tuned (DARTS-PT's code calls this a "once" projection): a decided
edge's op alone, in place of the mixture whose scale the later layers learned, can cost a small
supernet half its accuracy, and one tuning epoch does not recover it.

This module works on any NNI one-shot supernet whose mixed layers (an edge each) hold `_arch_alpha`
and `_softmax`, or whose mixed cells hold a dict of `_arch_alpha` vectors (an edge each) and one
`_softmax`; cells that share an edge's label share its vector and are decided together.
"""
import random

import torch

from .augment import BatchLoader
from .data import Split
from .training import log

WHOLE_EDGE = None  # state['removed'][1] when an edge is taken out whole, for the topology


class ProjectedSoftmax(torch.nn.Module):
    """Edge op weights as the selection sees them: the softmax of an edge's architecture weights, or
    its decided op alone; then, while a removal is measured, that op's weight (or the whole edge's) 0.
    The edge is known by its weight vector, which every cell sharing the edge's label holds."""

    def __init__(self, labels, state):
        super().__init__()
        self.labels, self.state = labels, state  # labels: {id(weight vector): edge label}

    def forward(self, alpha):
        label = self.labels[id(alpha)]
        decided = self.state['decided'].get(label)
        if decided is None:
            weights = torch.softmax(alpha, -1)
        else:
            weights = torch.nn.functional.one_hot(torch.tensor(decided, device=alpha.device), len(alpha)).to(alpha.dtype)
        removed = self.state['removed']
        if removed and removed[0] == label:
            keep = torch.ones_like(weights)
            keep[slice(None) if removed[1] is WHOLE_EDGE else removed[1]] = 0
            weights = weights * keep
        return weights


def mixed_edges(supernet):
    """{label: [op names]} of the supernet's edges, and the state their ProjectedSoftmax share, swapped
    in place of each mixed layer's or mixed cell's softmax. A mixed cell's vectors end with its zero op."""
    state = {'decided': {}, 'removed': None}
    edges, labels, softmaxes = {}, {}, []
    for module in supernet.modules():
        alpha = getattr(module, '_arch_alpha', None)
        if isinstance(alpha, torch.nn.Parameter):  # a mixed layer: one edge
            labels[id(alpha)] = module.label
            edges[module.label] = list(module.names)
            softmaxes.append(module)
        elif isinstance(alpha, torch.nn.ParameterDict):  # a mixed cell: an edge per vector
            for label, vector in alpha.items():
                labels[id(vector)] = label
                edges[label] = [*module.op_names, 'none']
            softmaxes.append(module)
    for module in softmaxes:
        module._softmax = ProjectedSoftmax(labels, state)
    return dict(sorted(edges.items())), state


@torch.no_grad()
def accuracy_and_loss(supernet, loader):
    """(percent correct, mean cross-entropy) over `loader`, BatchNorm on each batch's own statistics as in
    training (the running statistics mix all of the supernet's paths); the running statistics are left
    as they were."""
    saved = {name: buffer.clone() for name, buffer in supernet.named_buffers()}
    supernet.train()
    correct = seen = loss = 0
    for images, labels in loader:
        logits = supernet(images)
        correct += (logits.argmax(1) == labels).sum().item()
        loss += torch.nn.functional.cross_entropy(logits.float(), labels, reduction='sum').item()
        seen += len(labels)
    for name, buffer in supernet.named_buffers():
        buffer.copy_(saved[name])
    return 100 * correct / seen, loss / seen


def accuracy(supernet, loader):
    return accuracy_and_loss(supernet, loader)[0]


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


def held_out_loader(held_out_images, cfg):
    """The images the selection measures on: the first --select_images of them (0: all), in batches."""
    first = slice(cfg.select_images or None)
    return BatchLoader(Split(held_out_images.images[first], held_out_images.labels[first]), max(cfg.batch_size, 256),
                       held_out_images.images.device)


def select(supernet, criterion, weights_loader, held_out_images, cfg, node_inputs=None, inputs_per_node=0):
    """The cell DARTS-PT selects, as {edge label: op} (an edge a node does not keep: 'none'), and a
    record of every measurement in decision order: per edge {'edge', 'supernet_accuracy',
    'accuracy_without': {op: percent}, 'loss_without': {op: cross-entropy}, 'chosen'}, then per node
    that chooses its inputs {'node', 'supernet_accuracy', 'accuracy_without_edge': {edge: percent},
    'loss_without_edge': {edge: cross-entropy}, 'kept': [edges]}. Equal accuracies (a few hundred
    images tell ops apart by whole images) are ranked by the loss: the larger loss without it, the
    more the choice matters.
    `held_out_images`: the images the accuracies are measured on, unaugmented (a Split, or the search's
    architecture BatchLoader, which holds its split's tensors); `weights_loader`: the tuning batches;
    `node_inputs(edge labels)`: {node: [its incoming edges' labels]} of the nodes that keep `inputs_per_node`
    of them."""
    edges, state = mixed_edges(supernet)
    held_out = held_out_loader(held_out_images, cfg)
    order = list(edges)
    random.Random(cfg.seed).shuffle(order)
    inputs = node_inputs(edges) if node_inputs else {}
    nodes = sorted(node for node, labels in inputs.items() if len(labels) > inputs_per_node)
    random.Random(cfg.seed).shuffle(nodes)
    steps = len(order) + len(nodes)
    record = []
    whole = None

    def measure(removals):
        """{choice: (edge label, op index or WHOLE_EDGE)} -> ({choice: accuracy without it}, {choice: loss
        without it}, the choices from the one whose removal costs the most)."""
        without, loss = {}, {}
        for choice, removal in removals.items():
            state['removed'] = removal
            accuracy_without, loss_without = accuracy_and_loss(supernet, held_out)
            without[choice], loss[choice] = round(accuracy_without, 2), round(loss_without, 4)
        state['removed'] = None
        return without, loss, sorted(without, key=lambda choice: (without[choice], -loss[choice]))

    def next_step(done):
        """Before each choice: (after the first) the tuning, then the supernet's accuracy."""
        nonlocal whole
        if done == steps:
            return
        if done and cfg.select_tune_epochs and not cfg.select_once:
            tune(supernet, criterion, weights_loader, cfg.select_tune_epochs, cfg.initial_lr / 10, cfg)
        if whole is None or not cfg.select_once:  # once: the supernet is the same for every choice
            whole = accuracy(supernet, held_out)

    next_step(0)
    for done, label in enumerate(order, start=1):
        # Taking out the zero op changes nothing: it is measured (and can be chosen) only where the
        # export may choose it, which saves a pass over the held-out images an edge.
        without, loss, ranked = measure({op: (label, index) for index, op in enumerate(edges[label])
                                         if op != 'none' or cfg.export_none})
        chosen = ranked[0]
        if not cfg.select_once:
            state['decided'][label] = edges[label].index(chosen)
        record.append({'edge': label, 'supernet_accuracy': round(whole, 2), 'accuracy_without': without,
                       'loss_without': loss, 'chosen': chosen})
        log(f'  selection {done}/{steps}: {label} -> {chosen} (supernet {whole:.2f}%; without each op: '
            + ', '.join(f'{op} {acc:.2f}' for op, acc in without.items()) + ')')
        next_step(done)
    chosen_ops = {step['edge']: step['chosen'] for step in record}
    for done, node in enumerate(nodes, start=len(order) + 1):
        without, loss, ranked = measure({label: (label, WHOLE_EDGE) for label in inputs[node]})
        kept = ranked[:inputs_per_node]
        for label in inputs[node]:
            if label not in kept:
                chosen_ops[label] = 'none'
                if not cfg.select_once:
                    state['decided'][label] = edges[label].index('none')
        record.append({'node': node, 'supernet_accuracy': round(whole, 2), 'accuracy_without_edge': without,
                       'loss_without_edge': loss, 'kept': sorted(kept)})
        log(f'  selection {done}/{steps}: {node} keeps {", ".join(sorted(kept))} (supernet {whole:.2f}%; '
            f'without each edge: ' + ', '.join(f'{label} {acc:.2f}' for label, acc in without.items()) + ')')
        next_step(done)
    return dict(sorted(chosen_ops.items())), record
