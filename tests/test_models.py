import pytest
import torch
from torch import nn

from cifar_automl.augment import BatchLoader
from cifar_automl.data import load_dataset
from cifar_automl.models import build_model, model_names
from cifar_automl.training import evaluate

LAB_MODELS = ['resnet18', 'resnet50', 'vgg16', 'vgg16_bn', 'densenet121', 'squeezenet1_1',
              'shufflenet_v2_x1_0', 'mobilenet_v2', 'resnext50_32x4d', 'mnasnet1_0']


def test_zoo_has_every_lab_model_lenet_and_the_default():
    assert set(LAB_MODELS + ['lenet', 'resnet9', 'airbench']) <= set(model_names())


def test_unknown_model_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match='resnet18.*squeezenet1_1'):
        build_model('resnet1000')


@pytest.mark.parametrize('name', LAB_MODELS + ['lenet', 'resnet9', 'airbench'])
def test_model_trains_a_step_at_32x32(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, width=16)
    images, labels = torch.randn(4, 3, 32, 32), torch.arange(4)
    logits = model(images)
    assert logits.shape == (4, 10)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_stems_keep_resolution_for_32x32_inputs():
    """The ImageNet stem (stride 2 + max-pool) is what held the lab at 85-88%."""
    resnet = build_model('resnet18')
    assert resnet.conv1.stride == (1, 1) and isinstance(resnet.maxpool, nn.Identity)
    features = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1)
    assert features(torch.randn(1, 3, 32, 32)).shape[-1] == 32


@pytest.mark.slow
@pytest.mark.parametrize('name, lr, epochs', [('squeezenet1_1', 1e-3, 8), ('vgg16', 1e-4, 3)])
def test_lab_models_that_sat_at_chance_now_learn(name, lr, epochs):
    """Deep and without BatchNorm, both start slowly (SGD at lr 0.01 leaves chance within a CIFAR-10
    epoch, docs/trial.md); Adam shows within seconds on digits that they learn."""
    torch.manual_seed(0)
    data = load_dataset('digits')
    model = build_model(name, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = BatchLoader(data.train, 64, 'cpu', train=True, crop_padding=2)
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    accuracy = evaluate(model, BatchLoader(data.val, 300, 'cpu'), 10).accuracy
    assert accuracy > 50, f'{name} reached only {accuracy:.1f}% validation accuracy'
