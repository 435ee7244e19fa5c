#!/usr/bin/python3
"""Operator calls per training step of the seed recipe in PyTorch 1.13, the reference side of bench/step-ops.ts: the
same models, loss and loop as bench/epoch_times.py (which this imports), profiled with torch.autograd.profiler (the
RecordFunction hooks tsdistill's op profile uses too). Prints a JSON line: per kind, the step time in ms and the minor
page faults per step (both from a run without the profile) and, per operator or autograd node, calls per step and
self µs per step.

  /usr/bin/python3 bench/step_ops.py [--threads 2] [--steps 200] [--kinds plain,kd,kd_cached]
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import epoch_times as et  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--steps', type=int, default=200)
    p.add_argument('--kinds', default='teacher,plain,kd,kd_cached')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x, y = et.load_train()
    n = a.steps * et.BATCH
    x, y = x[:n].contiguous(), y[:n].contiguous()
    torch.manual_seed(0)
    teacher = et.LeNet5()
    teacher.eval()
    teacher.requires_grad_(False)
    cached = et.teacher_logits(teacher, x)
    out = {'threads': torch.get_num_threads(), 'steps': a.steps, 'torch': torch.__version__}
    for kind in a.kinds.split(','):
        live = teacher if kind == 'kd' else None
        cache = cached if kind == 'kd_cached' else None
        def fresh():
            torch.manual_seed(0)
            m = et.LeNet5() if kind == 'teacher' else et.LeNet5Half(10, output_relu=True)
            return m, torch.optim.SGD(m.parameters(), lr=et.LR, momentum=et.MOMENTUM)
        m, opt = fresh()
        et.run_epoch(m, opt, x, y, 0, live, cache)  # warm-up
        m, opt = fresh()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        et.run_epoch(m, opt, x, y, 1, live, cache)
        plain_ms = (time.perf_counter() - t0) * 1000 / a.steps
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / a.steps
        m, opt = fresh()
        with torch.autograd.profiler.profile() as prof:
            et.run_epoch(m, opt, x, y, 2, live, cache)
        rows = {}
        for e in prof.key_averages():
            rows[e.key] = [round(e.count / a.steps, 3), round(e.self_cpu_time_total / a.steps, 2)]
        out[kind] = {'step_ms': round(plain_ms, 3), 'faults': round(faults, 1), 'ops': rows}
        print(f'{kind}: {plain_ms:.3f} ms/step, {sum(c for c, _ in rows.values()):.1f} recorded calls/step', file=sys.stderr)
    print(json.dumps(out))


if __name__ == '__main__':
    sys.exit(main())
