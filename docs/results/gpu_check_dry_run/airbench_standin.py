import torch

def main(run):
    data = torch.load("cifar10/train.pt")
    print("|  %s  |  eval  |  2.3  |  2.3  |  0.1  |  0.1005  |  |  1.5  |" % run)
    return 0.1
