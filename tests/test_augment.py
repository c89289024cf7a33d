import torch

from cifar_automl.augment import BatchLoader, batch_crop, batch_cutout, batch_flip_lr, normalize
from cifar_automl.data import Split


def numbered_images(n=8):
    """Each pixel holds a distinct value, so moved pixels can be traced."""
    return torch.arange(n * 3 * 32 * 32, dtype=torch.float32).view(n, 3, 32, 32)


def test_crop_keeps_shape_and_translates_by_at_most_the_padding():
    images = numbered_images()
    cropped = batch_crop(images, 4, torch.Generator().manual_seed(0))
    assert cropped.shape == images.shape
    # The centre pixel of each crop comes from within 4 pixels of the original centre.
    for original, crop in zip(images, cropped):
        value = crop[0, 16, 16].item()
        y, x = (original[0] == value).nonzero()[0].tolist()
        assert abs(y - 16) <= 4 and abs(x - 16) <= 4
    shifted = [not torch.equal(a, b) for a, b in zip(images, cropped)]
    assert any(shifted)


def test_flip_mirrors_some_images_left_right_and_leaves_the_rest():
    images = numbered_images(64)
    flipped = batch_flip_lr(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)]
    unchanged = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 10 < sum(mirrored) < 54


def test_cutout_zeroes_a_square_of_the_given_side():
    images = torch.ones(32, 3, 32, 32)
    out = batch_cutout(images, 8, torch.Generator().manual_seed(0))
    zero_counts = (out[:, 0] == 0).flatten(1).sum(1)
    assert zero_counts.max() == 64  # a whole 8x8 square where it lies inside the image
    assert (zero_counts > 0).all() and (zero_counts <= 64).all()
    # The zeroed pixels of each image form one rectangle, the same in every channel.
    for image in out:
        ys, xs = (image[0] == 0).nonzero(as_tuple=True)
        assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == len(ys)
        assert torch.equal(image[0] == 0, image[2] == 0)


def test_loader_normalises_shuffles_and_covers_each_epoch():
    split = Split(torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8), torch.arange(100))
    loader = BatchLoader(split, 30, 'cpu', train=True, seed=1)
    assert len(loader) == 3  # the partial batch is dropped in training
    labels = torch.cat([y for _, y in loader])
    assert len(labels.unique()) == 90 and not torch.equal(labels, torch.arange(90))
    eval_loader = BatchLoader(split, 30, 'cpu')
    assert torch.equal(torch.cat([y for _, y in eval_loader]), torch.arange(100))
    batch, _ = next(iter(eval_loader))
    assert torch.allclose(batch, normalize(split.images[:30]))
