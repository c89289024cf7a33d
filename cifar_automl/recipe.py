"""The parts of the training recipe that act on a model or its optimizer, each a few lines.

After Keller Jordan's airbench94, hlb-CIFAR10 and David Page's "How to train your ResNet".
Each part is switched by one option of config.py (default on, with an off value), so that a
user can ablate it and an NNI search space can tune it. The parts that act on data are in
augment.py (alternating flip, translation) and training.py (schedule, test-time augmentation).
"""
import torch
from torch import nn

NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class PatchWhitening(nn.Conv2d):
    """A 2x2 convolution set, not learned: its 12 filters are the eigenvectors of the covariance of
    the training images' 2x2 patches, each divided by the square root of its eigenvalue, and their
    12 negatives (so that a GELU after it passes both signs). The next layer starts on decorrelated,
    unit-variance inputs. The weight stays frozen; the bias trains for the first epochs only."""
    OUT_CHANNELS = 2 * 3 * 2 * 2

    def __init__(self, eps=5e-4):
        super().__init__(3, self.OUT_CHANNELS, kernel_size=2, bias=True)
        self.weight.requires_grad = False
        self.eps = eps

    @torch.no_grad()
    def fit(self, images):
        """images: normalised float (N, 3, H, W) training images."""
        c, (h, w) = images.shape[1], self.kernel_size
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T / (eigenvalues + self.eps).sqrt().unsqueeze(1)).reshape(-1, c, h, w)
        self.weight.copy_(torch.cat((filters, -filters)))


def fit_whitening(model, images):
    for module in model.modules():
        if isinstance(module, PatchWhitening):
            module.fit(images)


def train_whitening_bias(model, trainable):
    """airbench trains the whitening bias for 3 epochs, then freezes it: later it only adds noise."""
    for module in model.modules():
        if isinstance(module, PatchWhitening):
            module.bias.requires_grad = trainable


@torch.no_grad()
def dirac_init(model):
    """Each 3x3 convolution starts as the identity on its first input channels (the other filters
    keep their random init), so a deep network without residuals first passes its input through."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.groups == 1:
            nn.init.dirac_(module.weight[:module.in_channels])


def configure_batchnorm(model, momentum, freeze_scale):
    """`momentum` is PyTorch's: the weight of each new batch in the running statistics. A high one
    (0.4) lets the statistics keep up with few steps per epoch and fast-moving weights. A frozen scale
    (weight 1) leaves each layer's gain to the next convolution's weights, which weight decay tames."""
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            module.momentum = momentum
            if freeze_scale and module.weight is not None:
                module.weight.requires_grad = False


def parameter_groups(model, weight_decay, bias_lr_scale):
    """Two SGD groups: the BatchNorm biases, whose learning rate is `bias_lr_scale` times the others'
    and whose weight decay is divided by it (the same decay per step), and everything else. Frozen
    parameters stay out (the whitening bias is in: it freezes later). 'lr_scale' is read by the schedule."""
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, NORM_LAYERS) and m.bias is not None}
    trainable = [p for p in model.parameters() if p.requires_grad]
    biases = [p for p in trainable if id(p) in norm_biases]
    others = [p for p in trainable if id(p) not in norm_biases]
    return [dict(params=biases, lr_scale=bias_lr_scale, weight_decay=weight_decay / bias_lr_scale),
            dict(params=others, lr_scale=1.0, weight_decay=weight_decay)]


def split_filters(groups, lr_scale, momentum):
    """For --optimizer muon: the convolution filters (4-D weights) leave their groups for one of their own,
    which Muon updates with momentum `momentum` and the schedule's learning rate times `lr_scale`, and
    no weight decay (Muon fixes their norm instead)."""
    filters = [p for group in groups for p in group['params'] if p.dim() == 4]
    rest = [{**group, 'params': [p for p in group['params'] if p.dim() != 4]} for group in groups]
    return rest + [dict(params=filters, lr_scale=lr_scale, momentum=momentum, weight_decay=0.0, muon=True)]


def orthogonalize(matrix, steps=3):
    """Newton-Schulz iteration from `matrix` = U S V^T towards U V^T, with the quintic of Jordan's Muon,
    whose coefficients lift small singular values fast: after 3 steps they lie in about [0.5, 1.5],
    which trains as well as the exact U V^T at a fraction of an SVD's cost."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix.bfloat16() if matrix.is_cuda else matrix.float()
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    x = x / (x.norm() + 1e-7)  # every singular value <= 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Nesterov SGD, and Muon (Keller Jordan, 2024; airbench94_muon) for the groups marked muon=True:
    each filter bank's Nesterov step, flattened to (out, in*k*k), is orthogonalised, so that every
    direction moves at the same rate, and the filters are rescaled to norm sqrt(out) before each step,
    so that the learning rate sets the relative size of the change. airbench94_muon reached
    airbench94's 94% in 8 epochs instead of 9.9."""

    def __init__(self, params, lr, momentum, weight_decay):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, muon=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum, muon = group['lr'], group['momentum'], group['muon']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=group['weight_decay']) if group['weight_decay'] else p.grad
                state = self.state[p]
                if 'momentum_buffer' not in state:
                    state['momentum_buffer'] = torch.zeros_like(grad)
                buffer = state['momentum_buffer'].mul_(momentum).add_(grad)
                update = grad.add(buffer, alpha=momentum)
                if muon:
                    p.mul_(p.shape[0] ** 0.5 / p.norm())
                    update = orthogonalize(update.flatten(1)).view_as(p)
                p.add_(update, alpha=-lr)


class Lookahead:
    """airbench's lookahead: every `every` steps the weights (and BatchNorm statistics) are replaced by
    an exponential average of themselves at those steps. The average's decay ramps up as decay**every *
    progress**3, so it barely acts early and smooths the noise of the last epochs; the last step ends
    on the average."""

    def __init__(self, model, decay, total_steps, every=5):
        self.model, self.decay, self.total_steps, self.every = model, decay, total_steps, every
        self.average = {name: value.detach().clone() for name, value in model.state_dict().items()
                        if value.is_floating_point()}

    @torch.no_grad()
    def after_step(self, step):
        """`step`: the number of optimizer steps taken so far (1 after the first)."""
        if step % self.every and step < self.total_steps:
            return
        decay = self.decay ** self.every * (step / self.total_steps) ** 3
        current = self.model.state_dict()
        for name, average in self.average.items():
            average.lerp_(current[name], 1 - decay)
            current[name].copy_(average)
