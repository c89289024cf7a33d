"""The fixed DARTS network of a searched cell (Liu et al. 2019, "DARTS: Differentiable
Architecture Search", https://arxiv.org/abs/1806.09055): NNI 3.0's DARTS space frozen to one
architecture, so that the search, the retrain and the trial build the very same network.

With the paper's DARTS_V2 cell, 36 channels and 20 cells it has 3.35M parameters without the
auxiliary head (paper: 3.3M; tests/test_arch_files.py checks it).

The training parts of the paper's retrain live here too, so that the retrain and the trial's
`darts:` model train alike: the auxiliary head's loss (training only) and drop path ramped over
the epochs, its probability held in a tensor (NNI's DropPath keeps a Python float, which
torch.compile guards on: a new value every epoch recompiled the model until torch's recompile limit).
"""
import warnings

import torch
from torch import nn

from ..errors import ConfigError

NNI_DARTS_CLASSES = 10  # NNI builds the 'cifar' variant with a 10-way classifier and auxiliary head


def build_darts(arch, num_classes=10, width=36, num_cells=20, auxiliary=False, drop_path_prob=0.0):
    """`arch`: the canonical architecture dict of arch_files.load_arch. In train mode, with
    `auxiliary`, the network returns (logits, auxiliary logits). DropPath modules exist only if
    `drop_path_prob` > 0; `set_drop_path_prob` changes them during training."""
    if num_classes != NNI_DARTS_CLASSES:
        raise ConfigError(f'a darts: model has {NNI_DARTS_CLASSES} classes (NNI\'s CIFAR DARTS network); '
                          f'this dataset has {num_classes}')
    with warnings.catch_warnings():
        # NNI's import warns that some torch classes are "not a nn.Module": harmless noise for a user.
        warnings.simplefilter('ignore', RuntimeWarning)
        from nni.nas.hub.pytorch import DARTS
        from nni.nas.space import model_context
    with model_context(arch):
        network = DARTS(width=width, num_cells=num_cells, dataset='cifar', auxiliary_loss=auxiliary,
                        drop_path_prob=drop_path_prob)
    replace_drop_paths(network)
    return network


class DropPath(nn.Module):
    """NNI's DropPath (drop each sample's path with probability p, scale the kept ones by 1/(1-p)),
    with p in a buffer: changing it is a tensor write, not a new graph for torch.compile."""

    def __init__(self, drop_prob):
        super().__init__()
        self.register_buffer('drop_prob', torch.tensor(float(drop_prob)), persistent=False)

    def forward(self, x):
        if not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype) < keep
        return x * mask / keep


def replace_drop_paths(network):
    from nni.nas.hub.pytorch.utils.nn import DropPath as NNIDropPath
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, NNIDropPath):
                setattr(module, name, DropPath(child.drop_prob))


def set_drop_path_prob(network, drop_prob):
    """In place of NNI's network.set_drop_path_prob, which would assign a float."""
    for module in network.modules():
        if isinstance(module, DropPath):
            module.drop_prob.fill_(drop_prob)


def drop_path_at(epoch, epochs, drop_path_prob):
    """The paper's schedule (DARTS cnn/train.py): linear from 0 at the first epoch."""
    return drop_path_prob * epoch / epochs


def auxiliary_forward(loss_fn, weight):
    """For training.train_epoch: in training the network also returns the auxiliary head's logits;
    their loss, weighted, is added to the main one (DARTS cnn/train.py). Evaluation (eval mode)
    sees the main logits only."""
    def forward(model, images, labels):
        logits, auxiliary_logits = model(images)
        return loss_fn(logits, labels) + weight * loss_fn(auxiliary_logits, labels), logits
    return forward


def count_parameters(model, without_auxiliary=True):
    """Parameters as the DARTS paper counts them: without the auxiliary head, used only in training."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not (without_auxiliary and name.startswith('auxiliary_head.')))
