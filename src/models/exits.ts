// Early exits for self-distillation (Be Your Own Teacher, Zhang et al. 2019): an auxiliary classifier after each stage
// of a CIFAR ResNet, Wide ResNet or VGG but the last. Each exit is a bottleneck (a 1×1 convolution to the last stage's
// width, then one stride-2 3×3 convolution per halving that separates the stage from the last one, each with batch
// norm and ReLU), global average pooling and a linear layer. The backbone's own classifier is the deepest exit.
//
// Taps (module paths of MultiExit): `exits.<i>` exit i's logits, `exits.<i>.pool` its pooled features [B, C], `pool`
// the deepest pooled features, and the output (`logits`) the deepest classifier's. `backbone.*` are the backbone's
// own modules; its weights load into a MultiExit under `backbone.` (and a MultiExit's `backbone.*` weights are the
// plain model's).
import { Tensor, ops } from '../torch';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Module, ModuleList, ReLU, Sequential } from '../nn';
import { ResNetCifar } from './resnet';
import { WideResNet } from './wrn';
import { Vgg } from './vgg';

export class ExitHead extends Module {
  readonly bottleneck: Sequential;
  readonly pool: Sequential;
  readonly fc: Linear;
  constructor(inChannels: number, outChannels: number, halvings: number, numClasses: number) {
    super();
    const layers: Module[] = [new Conv2d(inChannels, outChannels, 1, { bias: false }), new BatchNorm2d(outChannels), new ReLU()];
    for (let i = 0; i < halvings; i++) layers.push(new Conv2d(outChannels, outChannels, 3, { stride: 2, padding: 1, bias: false }), new BatchNorm2d(outChannels), new ReLU());
    this.bottleneck = this.registerModule('bottleneck', new Sequential(...layers));
    this.pool = this.registerModule('pool', new Sequential(new AdaptiveAvgPool2d(1), new Flatten()));
    this.fc = this.registerModule('fc', new Linear(outChannels, numClasses));
  }
  forward(h: Tensor): Tensor {
    return this.fc.call(this.pool.call(this.bottleneck.call(h)));
  }
}

/** How a backbone runs stage by stage. */
interface Parts {
  stem(x: Tensor): Tensor;
  /** The modules of the stem and of `post` (for parameter counts). */
  stemModules: Module[];
  postModules: Module[];
  stages: Module[];
  /** Applied before stage i > 0 (VGG's max pooling). */
  between(h: Tensor): Tensor;
  /** After the last stage, before pooling (WRN's final batch norm and ReLU). */
  post(h: Tensor): Tensor;
  fc: Module;
  channels: number[];
  /** Halvings of the spatial size between stage i's output and the last stage's. */
  halvings: number[];
  numClasses: number;
}

function partsOf(m: Module): Parts {
  const id = (h: Tensor) => h;
  if (m instanceof ResNetCifar)
    return {
      stem: (x) => m.bn1.call(m.conv1.call(x)).relu(), stemModules: [m.conv1, m.bn1], postModules: [], stages: [m.layer1, m.layer2, m.layer3], between: id, post: id, fc: m.fc,
      channels: m.widths.slice(1, 4), halvings: [2, 1, 0], numClasses: m.fc.outFeatures,
    };
  if (m instanceof WideResNet) {
    const ch = [m.block1, m.block2, m.block3].map((b) => (b.layer.at(0) as unknown as { conv1: Conv2d }).conv1.outChannels);
    return {
      stem: (x) => m.conv1.call(x), stemModules: [m.conv1], postModules: [m.bn1], stages: [m.block1, m.block2, m.block3], between: id, post: (h) => m.bn1.call(h).relu(), fc: m.fc,
      channels: ch, halvings: [2, 1, 0], numClasses: m.fc.outFeatures,
    };
  }
  if (m instanceof Vgg) {
    const n = m.blocks.length;
    return {
      stem: id, stemModules: [], postModules: [], stages: m.blocks, between: (h) => ops.max_pool2d(h, 2, 2), post: id, fc: m.classifier,
      channels: m.cfg.map((b) => b[b.length - 1]), halvings: m.blocks.map((_, i) => n - 1 - i), numClasses: m.classifier.outFeatures,
    };
  }
  throw new Error(`MultiExit: exits attach to the CIFAR ResNets, Wide ResNets and VGGs of the zoo (ResNetCifar, WideResNet, Vgg), got ${m.constructor.name}`);
}

export class MultiExit extends Module {
  readonly backbone: Module;
  readonly exits: ModuleList<ExitHead>;
  /** The deepest features: global average pooling of the last stage ([B, C]); tap `pool`. */
  readonly pool: Sequential;
  private readonly parts: Parts;
  constructor(backbone: Module) {
    super();
    this.parts = partsOf(backbone);
    const p = this.parts;
    const last = p.channels[p.channels.length - 1];
    this.backbone = this.registerModule('backbone', backbone);
    this.exits = this.registerModule('exits', new ModuleList(p.stages.slice(0, -1).map((_, i) => new ExitHead(p.channels[i], last, p.halvings[i], p.numClasses))));
    this.pool = this.registerModule('pool', new Sequential(new AdaptiveAvgPool2d(1), new Flatten()));
  }
  /** Exits, the deepest (the backbone's classifier) included. */
  get numExits(): number {
    return this.parts.stages.length;
  }
  /** Parameters exit i computes with: the stem, the stages up to i and exit i's head (the deepest: the backbone). */
  exitParameters(i: number): number {
    const p = this.parts;
    const count = (ms: Module[]) => ms.reduce((a, m) => a + m.numParameters(), 0);
    const head = i === p.stages.length - 1 ? count([...p.postModules, p.fc]) : this.exits.at(i).numParameters();
    return count(p.stemModules) + count(p.stages.slice(0, i + 1)) + head;
  }
  /** Whether exit i is observed (a forward hook on it or inside it): in eval mode only observed exits run. */
  private observed(i: number): boolean {
    return this.exits.at(i).namedModules().some(([, m]) => m.hasForwardHooks());
  }
  /**
   * Runs the backbone up to stage `upTo` (default: all) and returns the logits of exit `upTo`; the exits before it run
   * in training mode and whenever observed (`all` collects their logits).
   */
  private run(x: Tensor, upTo: number, all: Tensor[] | null): Tensor {
    const p = this.parts;
    let h = p.stem(x);
    for (let i = 0; i <= upTo; i++) {
      if (i > 0) h = p.between(h);
      h = p.stages[i].call(h);
      if (i === upTo && i < p.stages.length - 1) return this.exits.at(i).call(h);
      if (i < p.stages.length - 1 && (all || this.training || this.observed(i))) {
        const e = this.exits.at(i).call(h);
        if (all) all.push(e);
      }
    }
    const out = p.fc.call(this.pool.call(p.post(h))) as Tensor;
    if (all) all.push(out);
    return out;
  }
  /** The deepest exit's logits (the other exits run in training mode, for their taps). */
  forward(x: Tensor): Tensor {
    return this.run(x, this.parts.stages.length - 1, null);
  }
  /** Every exit's logits, shallowest first, the deepest last. */
  forwardAll(x: Tensor): Tensor[] {
    const all: Tensor[] = [];
    this.run(x, this.parts.stages.length - 1, all);
    return all;
  }
  /** Exit i's logits, computing only what it needs (for its accuracy and latency on its own). */
  forwardExit(x: Tensor, i: number): Tensor {
    if (!Number.isInteger(i) || i < 0 || i >= this.numExits) throw new Error(`MultiExit.forwardExit: exit ${i} out of range (0..${this.numExits - 1})`);
    return this.run(x, i, null);
  }
}
