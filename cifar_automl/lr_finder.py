"""The learning-rate range test of Smith, "Cyclical Learning Rates for Training Neural
Networks" (2017): raise the learning rate exponentially, one step at a time, and
watch the smoothed training loss. Training works fastest a little below where the
loss is lowest; past that it blows up."""
import math


from .training import autocast


def lr_range_test(model, loader, optimizer, loss_fn, amp_dtype=None, scaler=None, start_lr=1e-6, end_lr=10.0,
                  steps=100, smoothing=0.98):
    """Returns (lrs, smoothed_losses); stops early once the loss passes 4x its minimum. `scaler`: the
    training's GradScaler under fp16, without which small gradients underflow to zero and the test
    sees a flat loss."""
    device = loader.labels.device
    model.train()
    lrs, losses = [], []
    average, best = 0.0, math.inf
    step = 0
    while step < steps:
        for images, labels in loader:
            lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
            for group in optimizer.param_groups:
                group['lr'] = lr
            with autocast(device, amp_dtype):
                loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)  # skipped on an overflow; the loss still counts
                scaler.update()
            average = smoothing * average + (1 - smoothing) * loss.item()
            smoothed = average / (1 - smoothing ** (step + 1))  # bias correction of the running mean
            if not math.isfinite(smoothed) or smoothed > 4 * best:
                return lrs, losses
            best = min(best, smoothed)
            lrs.append(lr)
            losses.append(smoothed)
            step += 1
            if step == steps:
                break
    return lrs, losses


def suggest_lr(lrs, losses):
    """A tenth of the learning rate at the lowest smoothed loss: safely on the falling slope."""
    if not lrs:
        raise ValueError('the range test recorded no finite loss; lower its start learning rate')
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def plot_lr_range(lrs, losses, suggestion, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color='tab:red', linestyle='--', label=f'suggested initial_lr {suggestion:.3g}')
    ax.set_xscale('log')
    ax.set_xlabel('learning rate')
    ax.set_ylabel('training loss (smoothed)')
    ax.set_title('Learning-rate range test')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
