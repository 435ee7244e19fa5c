// A rank of the process-group tests: all-reduce (sum and mean), broadcast, all-gather and a barrier, printing what it
// got as JSON in OUT_DIR/rank-N.json. Joins the group the environment describes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ProcessGroup, tensor, tidy } from '../src/torch';

const g = ProcessGroup.fromEnv()!;
const out = tidy(() => {
  const x = tensor([g.rank + 1, 10 * (g.rank + 1)]);
  g.allReduce([x]);
  const m = tensor([g.rank * 2], { dtype: 'float64' });
  g.allReduce([m], 'mean');
  const b = tensor([g.rank === 1 ? 7 : -1, 3]);
  g.broadcast([b], 1);
  const all = g.allGather(tensor([g.rank, g.rank * g.rank]));
  g.barrier();
  return { rank: g.rank, sum: [...x.data()], mean: m.item(), bcast: [...b.data()], gathered: all.map((t) => [...t.data()]) };
});
fs.writeFileSync(path.join(process.env.OUT_DIR!, `rank-${g.rank}.json`), JSON.stringify(out));
g.destroy();
