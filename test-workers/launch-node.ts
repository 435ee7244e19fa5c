// One "machine" of the network-namespace test in test/dist.test.ts: launches dist-kd.js on this machine's ranks with
// the launch flags given on the command line (--nproc, --nnodes, --node-rank, --master-addr, --master-port).
//   ip netns exec NS node dist/test-workers/launch-node.js --nproc 1 --nnodes 2 --node-rank 0 --master-addr A ...
import * as path from 'node:path';
import { launch, takeLaunchFlags } from '../src/run';

const flags = takeLaunchFlags(process.argv.slice(2));
if (!flags) throw new Error('launch-node: pass --nproc N and the machine flags');
launch({ ...flags.opts, argv: [], script: path.join(__dirname, 'dist-kd.js'), graceMs: 20_000 }).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  },
);
