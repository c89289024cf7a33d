"""The fixed DARTS network of a searched cell (Liu et al. 2019, "DARTS: Differentiable
Architecture Search", https://arxiv.org/abs/1806.09055): NNI 3.0's DARTS space frozen to one
architecture, so that the search, the retrain and the trial build the very same network.

With the paper's DARTS_V2 cell, 36 channels and 20 cells it has 3.35M parameters without the
auxiliary head (paper: 3.3M; tests/test_arch_files.py checks it).
"""
import warnings

from ..config import ConfigError

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
        return DARTS(width=width, num_cells=num_cells, dataset='cifar', auxiliary_loss=auxiliary,
                     drop_path_prob=drop_path_prob)


def count_parameters(model, without_auxiliary=True):
    """Parameters as the DARTS paper counts them: without the auxiliary head, used only in training."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not (without_auxiliary and name.startswith('auxiliary_head.')))
