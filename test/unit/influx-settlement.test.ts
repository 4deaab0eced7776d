// The Influx writer's settlement (which ingest-log events are done) against a
// plain model, over seeded random runs that wrap its ring and make it grow.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Settlement } from '../../src/influx/settlement.js';
import { seeded as random } from '../helpers/rng.js';

/** The model: an event is done once as many points are settled as were accepted up to and including it; told the newest done. */
class Model {
  private accepted = 0;
  private settledPoints = 0;
  private readonly marks: [number, number][] = [];
  constructor(private readonly told: number[]) {}
  accept(points: number, seq: number | undefined): void {
    this.accepted += points;
    if (seq !== undefined) this.marks.push([this.accepted, seq]);
    this.check();
  }
  settle(points: number): void {
    if (points > 0) this.settledPoints += points;
    this.check();
  }
  private check(): void {
    let newest: number | undefined;
    while (this.marks.length > 0 && (this.marks[0]?.[0] ?? Infinity) <= this.settledPoints) newest = this.marks.shift()?.[1];
    if (newest !== undefined) this.told.push(newest);
  }
}

test('settlement: the newest done event after each step, as the model says, through wraps and growth', () => {
  for (const seed of [1, 2, 3]) {
    const next = random(seed);
    const told: number[] = [];
    const expected: number[] = [];
    const settlement = new Settlement((seq) => told.push(seq));
    const model = new Model(expected);
    let seq = 0;
    let outstanding = 0;
    for (let step = 0; step < 60_000; step++) {
      // Phases of accepting far ahead of settling (the ring grows), then catching up (it wraps).
      const phase = Math.floor(step / 5_000) % 2 === 0 ? 0.7 : 0.3;
      if (next() < phase) {
        const points = next() < 0.1 ? 0 : 1 + Math.floor(next() * 3);
        const withSeq = next() < 0.9 ? ++seq : undefined;
        settlement.accepted(points, withSeq);
        model.accept(points, withSeq);
        outstanding += points;
      } else {
        const points = Math.min(outstanding, Math.floor(next() * 6));
        settlement.settled(points);
        model.settle(points);
        outstanding -= points;
      }
      assert.equal(told.length, expected.length, `seed ${seed} step ${step}`);
    }
    settlement.settled(outstanding);
    model.settle(outstanding);
    assert.deepEqual(told, expected, `seed ${seed}`);
    assert.equal(told.at(-1), seq, `seed ${seed}: every event done at the end`);
  }
});
