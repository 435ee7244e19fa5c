#!/usr/bin/python3
"""Epoch times of the seed recipe (examples/seed-fashion-mnist-lenet.yaml) in PyTorch, the reference side of
bench/epoch-times.ts: LeNet-5 teacher, half-width LeNet student with a ReLU on its output, SGD (lr 0.01, momentum 0.9),
batch 64, T = 4, alpha = 0.3, Fashion-MNIST normalised with mean 0.286 and std 0.353.

Four epoch kinds, in this order, each on fresh models seeded with torch.manual_seed(0):
  teacher    LeNet-5 trained with cross-entropy (this trained teacher is the one the KD kinds use)
  plain      the student trained with cross-entropy
  kd         the student against the frozen teacher, run in eval mode under no_grad on every batch
  kd_cached  the student against the teacher's logits, computed once for the whole training set in data order
             (untimed) and gathered by the batch's indices each step

The data are resident float tensors (normalised once); each epoch shuffles with torch.randperm and the loop walks index
slices of the permutation (no DataLoader, no workers). Per step the loss (and for KD the hard and soft terms) and the
correct count are read with .item(), as tsdistill's trainModel does.

  /usr/bin/python3 bench/epoch_times.py [--threads 2] [--epochs 1] [--warmup 200]

Prints one line per kind, then a JSON line with the mean epoch seconds per kind.
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = '/usr/share/datasets/fashion-mnist'
MEAN, STD = 0.286, 0.353
BATCH, LR, MOMENTUM, T, ALPHA, SEED = 64, 0.01, 0.9, 4.0, 0.3, 0
LOOP = 'for over index slices of torch.randperm on resident float tensors (no DataLoader)'


class LeNet5(nn.Module):
    """conv(1→6, k5, pad 2) → pool → conv(6→16, k5) → pool → 400→120→84→classes, as src/models/lenet.ts."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x).relu(), 2)
        x = F.max_pool2d(self.conv2(x).relu(), 2).flatten(1)
        x = self.fc1(x).relu()
        x = self.fc2(x).relu()
        return self.fc3(x)


class LeNet5Half(nn.Module):
    """conv(1→3, k5) → ReLU → max-pool 2 → linear(432→classes), optional ReLU on the logits, as src/models/lenet.ts."""

    def __init__(self, num_classes=10, output_relu=False):
        super().__init__()
        self.output_relu = output_relu
        self.conv = nn.Conv2d(1, 3, 5)
        self.fc = nn.Linear(432, num_classes)

    def forward(self, x):
        y = self.fc(F.max_pool2d(self.conv(x).relu(), 2).flatten(1))
        return y.relu() if self.output_relu else y


def read_idx(path):
    """An IDX file (gzip or raw) as a numpy array: magic (0, 0, dtype code, ndim), big-endian int32 dims, data."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f'{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})')
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f'{path}: {data.size} bytes of data for dimensions {dims}')
    return data.reshape(dims)


def find(name):
    for f in (name + '.gz', name):
        p = os.path.join(DATA_DIR, f)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f'Fashion-MNIST not found: {os.path.join(DATA_DIR, name)}.gz is missing '
                            '(apt-get install dataset-fashion-mnist)')


def load_train():
    images = read_idx(find('train-images-idx3-ubyte'))
    labels = read_idx(find('train-labels-idx1-ubyte'))
    x = torch.from_numpy(images.copy()).float().div_(255).sub_(MEAN).div_(STD).unsqueeze(1).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def kd_loss(s, t, y):
    hard = F.cross_entropy(s, y)
    soft = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction='batchmean') * (T * T)
    return ALPHA * hard + (1 - ALPHA) * soft, hard, soft


def run_epoch(model, opt, x, y, epoch, teacher=None, cached=None, max_steps=None):
    """One training epoch (or its first max_steps steps); returns (seconds, mean loss, train accuracy %)."""
    model.train()
    n = x.shape[0]
    torch.manual_seed(SEED * 1000 + epoch)
    t0 = time.perf_counter()
    perm = torch.randperm(n)
    loss_sum = hard_sum = soft_sum = 0.0
    correct = seen = 0
    for step, i in enumerate(range(0, n, BATCH)):
        if max_steps is not None and step >= max_steps:
            break
        idx = perm[i:i + BATCH]
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        if teacher is not None:
            with torch.no_grad():
                t = teacher(xb)
            loss, hard, soft = kd_loss(logits, t, yb)
        elif cached is not None:
            loss, hard, soft = kd_loss(logits, cached[idx], yb)
        else:
            loss, hard, soft = F.cross_entropy(logits, yb), None, None
        opt.zero_grad()
        loss.backward()
        opt.step()
        b = yb.shape[0]
        loss_sum += loss.item() * b
        if hard is not None:
            hard_sum += hard.item() * b
            soft_sum += soft.item() * b
        with torch.no_grad():
            correct += (logits.argmax(1) == yb).sum().item()
        seen += b
    return time.perf_counter() - t0, loss_sum / max(seen, 1), 100.0 * correct / max(seen, 1)


@torch.no_grad()
def teacher_logits(teacher, x):
    teacher.eval()
    return torch.cat([teacher(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)])


def train_kind(kind, x, y, epochs, teacher=None, warmup=0):
    """Mean epoch seconds (and the last epoch's loss and accuracy) of one kind on fresh models; the teacher kind also
    returns its trained model."""
    torch.manual_seed(SEED)
    model = LeNet5() if kind == 'teacher' else LeNet5Half(10, output_relu=True)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    live = cached = None
    if kind in ('kd', 'kd_cached'):
        teacher.eval()
        teacher.requires_grad_(False)
        if kind == 'kd':
            live = teacher
        else:
            cached = teacher_logits(teacher, x)
    if warmup:
        # a throwaway copy absorbs the first steps' allocations; the timed model starts from the seeded weights
        w = LeNet5() if kind == 'teacher' else LeNet5Half(10, output_relu=True)
        run_epoch(w, torch.optim.SGD(w.parameters(), lr=LR, momentum=MOMENTUM), x, y, 1000, live, cached, warmup)
    times = []
    loss = acc = 0.0
    for e in range(epochs):
        s, loss, acc = run_epoch(model, opt, x, y, e, live, cached)
        times.append(s)
    return sum(times) / len(times), loss, acc, model


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--warmup', type=int, default=200, help='untimed steps on a throwaway model before each kind')
    a = p.parse_args()
    if a.threads < 1 or a.epochs < 1 or a.warmup < 0:
        p.error('--threads and --epochs must be positive integers, --warmup non-negative')
    torch.set_num_threads(a.threads)
    x, y = load_train()

    out = {}
    stats = {}
    teacher = None
    for kind in ('teacher', 'plain', 'kd', 'kd_cached'):
        s, loss, acc, model = train_kind(kind, x, y, a.epochs, teacher, a.warmup)
        if kind == 'teacher':
            teacher = model
        out[kind] = round(s, 4)
        stats[kind] = {'loss': round(loss, 4), 'train_acc': round(acc, 2)}
        print(f'{kind:<10} epoch {s:7.2f} s   loss {loss:.4f}   train acc {acc:.2f} %', flush=True)
    print(json.dumps({'threads': torch.get_num_threads(), 'epochs': a.epochs, 'warmup_steps': a.warmup,
                      'torch': torch.__version__, 'loop': LOOP, **out, 'last_epoch': stats}))


if __name__ == '__main__':
    sys.exit(main())
