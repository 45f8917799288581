import t from 'tap';
import { runSeedRange } from '../../testkit/simulator/seed-range.js';

// Seeds 1-100 of the deterministic simulator (make test runs 300 in three files, side by side).
await runSeedRange(t, 1, 100);
