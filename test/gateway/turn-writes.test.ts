import t from 'tap';
import { TurnWrites } from '../../gateway/ws/turn-writes.js';

/** A socket that records its corks and what was written inside each. */
class FakeSocket {
  corks: string[][] = [];
  private current: string[] | null = null;
  open = true;
  cork(cb: () => void): void {
    this.current = [];
    cb();
    this.corks.push(this.current);
    this.current = null;
  }
  send(frame: string): void {
    if (!this.current) throw new Error('written outside a cork');
    this.current.push(frame);
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

t.test("a turn's frames leave each socket in one cork, in order; closed and forgotten sockets get none", async (t) => {
  const writes = new TurnWrites<FakeSocket, string>(
    (socket, frames) => frames.forEach((f) => socket.send(f)),
    (socket) => socket.open,
  );
  const [a, b, closed, forgotten] = [new FakeSocket(), new FakeSocket(), new FakeSocket(), new FakeSocket()];
  closed.open = false;
  for (const [socket, frame] of [
    [a, 'a1'],
    [b, 'b1'],
    [a, 'a2'],
    [closed, 'x'],
    [forgotten, 'f1'],
    [a, 'a3'],
  ] as const)
    writes.queue(socket, frame);
  writes.forget(forgotten);
  t.same(a.corks, [], 'nothing is written before the end of the turn');
  await turn();
  t.same(a.corks, [['a1', 'a2', 'a3']], 'one cork, the frames in the order queued');
  t.same(b.corks, [['b1']]);
  t.same(closed.corks, [], 'a closed socket is not touched');
  t.same(forgotten.corks, [], 'a forgotten socket gets nothing');
  writes.queue(b, 'b2');
  await turn();
  t.same(b.corks, [['b1'], ['b2']], 'the next turn is a write of its own');
  t.same(a.corks.length, 1, 'and nothing is written twice');
});
