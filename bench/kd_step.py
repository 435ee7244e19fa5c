#!/usr/bin/python3
"""The engine benchmark's Python reference: the knowledge-distillation step of bench/engine.ts and bench/kd_step.cc in
PyTorch (a frozen LeNet-5 teacher under no_grad, the half-width LeNet student, loss alpha*CE + (1-alpha)*T^2*KL at T = 4
with KL summed over the batch and divided by its size, SGD momentum 0.9, batch 64, the batch made once).

Run as a child of bench/engine.ts so that its rounds alternate with the Node and C++ steps: each line `steps N` on stdin
runs N steps and answers one line, a JSON array of the per-step times in ms; `report N` runs N steps that also read
what the engine reports every step (the loss, the two terms, the correct count); `quit` (or end of input) ends it.
The first line it writes is a JSON object describing itself (with sums of the batch and of each model's parameters,
which the benchmark compares with its own: every side starts from the same weights and batch).

  /usr/bin/python3 bench/kd_step.py [--threads 1] [--alpha 0.3] [--temperature 4]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from epoch_times import LeNet5, LeNet5Half  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--alpha', type=float, default=0.3)
    p.add_argument('--temperature', type=float, default=4.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    teacher = LeNet5()
    teacher.eval()
    teacher.requires_grad_(False)
    student = LeNet5Half()
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    T, alpha = a.temperature, a.alpha

    def step():
        with torch.no_grad():
            tlogits = teacher(x)
        slogits = student(x)
        ce = F.cross_entropy(slogits, y)
        kl = F.kl_div(F.log_softmax(slogits / T, 1), F.log_softmax(tlogits / T, 1), reduction='sum', log_target=True) / 64
        loss = alpha * ce + (1 - alpha) * T * T * kl
        opt.zero_grad()
        loss.backward()
        opt.step()

    def step_reporting():
        # the same step, reading per step what tsdistill's engine reports (the loss, the two terms and the correct
        # count), as bench/epoch_times.py does
        with torch.no_grad():
            tlogits = teacher(x)
        slogits = student(x)
        ce = F.cross_entropy(slogits, y)
        kl = F.kl_div(F.log_softmax(slogits / T, 1), F.log_softmax(tlogits / T, 1), reduction='sum', log_target=True) / 64
        loss = alpha * ce + (1 - alpha) * T * T * kl
        values = (loss.item(), ce.item(), (T * T * kl).item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            correct = (slogits.argmax(1) == y).sum().item()
        return values, correct

    with torch.no_grad():
        sums = [x.sum().item()] + [sum(p.sum().item() for p in m.parameters()) for m in (teacher, student)]
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'checksums': sums}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == 'quit':
            break
        fn = step_reporting if cmd[0] == 'report' else step
        times = []
        for _ in range(int(cmd[1])):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        print(json.dumps(times), flush=True)


if __name__ == '__main__':
    sys.exit(main())
