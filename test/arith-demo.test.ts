// The arithmetic rejection-sampling demo (examples/arith-llm.ts) end to end at its --quick size: teacher, served
// generation with the exact-match verifier, three students, and accounting that adds up. Accuracy at this size is
// ~0; the numbers that matter are in docs/llm-arith.md.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { readJsonl } from './helpers';

const root = path.join(__dirname, '..', '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsd-arith-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('arithmetic demo', () => {
  it('--quick: every sample is accounted for, the verifier is right about each, the students get the sets it says', () => {
    const out = path.join(tmp, 'run');
    const r = spawnSync(process.execPath, [path.join(root, 'dist', 'examples', 'arith-llm.js'), '--quick', '--out', out, '--threads', '1'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual(Object.keys(last).sort(), ['all_samples_em', 'pass_rate', 'student_seed', 'teacher_em', 'verified_em', 'worked_em']);
    const res = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    const g = res.generate;
    assert.equal(g.requests, 16 * 2);
    assert.equal(g.verified + g.rejected + g.failed, g.requests);
    assert.equal(g.failed, 0);
    assert.equal(res.teacher.exact_match.total, 32);

    // the verifier's verdicts, checked against the questions' true sums
    const questions = new Map(readJsonl(path.join(out, 'questions.jsonl')).map((q) => [q.id, q]));
    const finalNumber = (text: string) => /answer is\s*(-?\d+)/i.exec(text)?.[1] ?? /(-?\d+)\D*$/.exec(text)?.[1];
    const truth = (id: string) => {
      const [a, b] = questions.get(id)!.prompt.match(/\d+/g)!.map(Number);
      assert.equal(String(a + b), questions.get(id)!.answer);
      return a + b;
    };
    const samples = readJsonl(path.join(out, 'generated', 'samples.jsonl'));
    const rejected = readJsonl(path.join(out, 'generated', 'rejected.jsonl'));
    assert.equal(samples.length, g.verified);
    for (const s of samples) assert.equal(Number(finalNumber(s.messages.at(-1).content)), truth(s.meta.prompt_id), s.messages.at(-1).content);
    const unverified = rejected.filter((x) => x.reason === 'unverified');
    for (const x of unverified) assert.notEqual(Number(finalNumber(x.response.content)), truth(x.meta.prompt_id), x.response.content);
    assert.equal(g.rejected_wrong_step + g.rejected_right_steps_wrong_answer, unverified.length);

    // the students were trained on the sets the table names
    assert.equal(res.student_all_samples.examples, samples.length + unverified.length);
    assert.equal(res.student_verified_samples.examples, samples.length);
    assert.equal(res.student_worked_solutions.examples, 16);
    assert.ok(res.teacher.params >= 4 * res.student_worked_solutions.params, 'the students are at least 4x smaller');
  });
});
