"""The supernets' faster CPU ops compute what the library ops compute."""
import warnings

import pytest
import torch

from cifar_automl import cpu_ops


def test_box_average_is_the_3x3_average_pool_without_the_padding():
    x = torch.randn(2, 3, 7, 5, requires_grad=True)
    pool = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    expected = pool(x)
    grad_expected, = torch.autograd.grad(expected.square().sum(), x)
    got = cpu_ops.BoxAverage3x3()(x)
    grad_got, = torch.autograd.grad(got.square().sum(), x)
    assert torch.allclose(got, expected, atol=1e-6) and torch.allclose(grad_got, grad_expected, atol=1e-5)
    assert got[0, 0, 0, 0].item() == pytest.approx(x[0, 0, :2, :2].mean().item(), abs=1e-6)  # a corner averages 4 pixels


@pytest.mark.parametrize('choice', ['grouped', 'dense'])
@pytest.mark.parametrize('kernel, dilation, stride', [(3, 1, 1), (5, 1, 2), (3, 2, 1), (5, 2, 1)])
def test_depthwise_conv_gives_the_grouped_convs_output_and_gradients_either_way(choice, kernel, dilation, stride):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, kernel, stride=stride, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                           groups=4, bias=False)
    fast = cpu_ops.DepthwiseConv2d.like(conv)
    assert fast.weight is conv.weight
    x = torch.randn(2, 4, 9, 9)
    key = ((2, 4, 9, 9), fast.kernel_size, fast.stride, fast.dilation, x.dtype, True)
    cpu_ops.DepthwiseConv2d.choices[key] = choice
    try:
        expected, got = conv(x), fast(x)
        assert torch.allclose(got, expected, atol=1e-5)
        grad_expected, = torch.autograd.grad(expected.sum(), conv.weight)
        grad_got, = torch.autograd.grad(fast(x).sum(), conv.weight)
        assert torch.allclose(grad_got, grad_expected, atol=1e-4)
    finally:
        del cpu_ops.DepthwiseConv2d.choices[key]


def test_a_new_shape_is_timed_once_and_its_choice_shared():
    conv = cpu_ops.DepthwiseConv2d(3, 3, 5, padding=2, groups=3)
    x = torch.randn(1, 3, 11, 11)
    before = dict(cpu_ops.DepthwiseConv2d.choices)
    conv(x)
    new = set(cpu_ops.DepthwiseConv2d.choices) - set(before)
    assert len(new) == 1 and cpu_ops.DepthwiseConv2d.choices[new.pop()] in ('grouped', 'dense')


def test_speed_up_swaps_the_ops_of_nnis_darts_supernet_and_keeps_its_state():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        from nni.nas.hub.pytorch import DARTS as DartsSpace
        from nni.nas.strategy import DARTS
    torch.set_num_threads(1)  # tiny tensors: a second OpenMP thread only spins (conftest restores the count)
    torch.manual_seed(0)
    supernet = DARTS().mutate_model(DartsSpace(width=4, num_cells=3, dataset='cifar'))
    x = torch.randn(2, 3, 16, 16)
    supernet.eval()
    with torch.no_grad():
        expected, state = supernet(x), supernet.state_dict()
        swapped = cpu_ops.speed_up(supernet)
        kinds = {type(m) for m in supernet.modules()}
        assert swapped > 0 and {cpu_ops.BoxAverage3x3, cpu_ops.DepthwiseConv2d} <= kinds
        assert supernet.state_dict().keys() == state.keys()  # a checkpoint of either loads into the other
        assert torch.allclose(supernet(x), expected, atol=1e-5)
    assert cpu_ops.speed_up(supernet) == 0  # already swapped
