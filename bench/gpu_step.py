"""Step times of bench/gpu.ts in PyTorch on the same GPU: resnet20 plain step (cross-entropy) and KD step against a
frozen resnet56, CIFAR-sized random batch on the device, SGD (lr 0.05, momentum 0.9, weight decay 5e-4), each step
ending in loss.item(). Same warm-up, steps, rounds and statistics (median of the steps, best of the rounds).

    python3 bench/gpu_step.py [--steps 100] [--rounds 3] [--batch 128] [--device cuda]

Prints a table and a final JSON line."""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

T, ALPHA = 4.0, 0.9


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth, w=(16, 16, 32, 64), num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = w[0]
        self.conv1 = nn.Conv2d(3, w[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.layer1 = self._make(w[1], n, 1)
        self.layer2 = self._make(w[2], n, 2)
        self.layer3 = self._make(w[3], n, 2)
        self.fc = nn.Linear(w[3], num_classes)

    def _make(self, planes, n, stride):
        layers = []
        for i in range(n):
            layers.append(BasicBlock(self.inplanes, planes, stride if i == 0 else 1))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def kd_loss(s, t, y):
    hard = F.cross_entropy(s, y)
    soft = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction='batchmean') * (T * T)
    return ALPHA * hard + (1 - ALPHA) * soft


def time_steps(kind, teacher, x, y, steps, device):
    torch.manual_seed(1)
    student = ResNet(20).to(device).train()
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    out = []
    warm = 10
    for s in range(steps + warm):
        t0 = time.perf_counter()
        if kind == 'kd':
            with torch.no_grad():
                t = teacher(x)
            loss = kd_loss(student(x), t, y)
        else:
            loss = F.cross_entropy(student(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        ms = (time.perf_counter() - t0) * 1e3
        if s >= warm:
            out.append(ms)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--device', default='cuda')
    a = p.parse_args()
    print(f'torch {torch.__version__}, cuda {torch.version.cuda}, device {a.device}'
          + (f' ({torch.cuda.get_device_name()})' if a.device.startswith('cuda') else ''))
    torch.manual_seed(0)
    teacher = ResNet(56).to(a.device).eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    x = torch.randn(a.batch, 3, 32, 32, device=a.device)
    y = torch.randint(0, 10, (a.batch,), device=a.device)
    kinds = ['plain', 'kd']
    times = {k: [] for k in kinds}
    for _ in range(a.rounds):
        for k in kinds:
            times[k].append(statistics.median(time_steps(k, teacher, x, y, a.steps, a.device)))
    best = {k: min(v) for k, v in times.items()}
    print(f'\nstep times on {a.device}, batch {a.batch}, median of {a.steps} steps, best of {a.rounds} rounds (ms):')
    print('| step | ms | ratio to plain |\n|---|---:|---:|')
    for k in kinds:
        print(f'| {k} | {best[k]:.2f} | {best[k] / best["plain"]:.2f} |')
    print(json.dumps({'torch': torch.__version__, 'device': a.device, 'batch': a.batch, 'steps': a.steps, 'rounds': a.rounds, 'step_ms': best}))


if __name__ == '__main__':
    main()
