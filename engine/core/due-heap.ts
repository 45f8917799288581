import { invariant } from './errors.js';

/**
 * An indexed binary min-heap of auction slots ordered by their due time (the
 * moment the engine must open or close them), ties broken by a stable rank
 * (the auction number) so that every engine issues due commands in one order.
 *
 * Keys live in the caller's records: when a slot's due time changes the
 * caller calls `update(slot)`. Each slot is in the heap at most once, so its
 * size is bounded by the auction capacity: 8 bytes per auction slot.
 */
export class DueHeap {
  private readonly heap: Uint32Array;
  /** Position of each slot in `heap`, plus one; 0 when absent. */
  private readonly position: Uint32Array;
  private count = 0;

  /** The due time of slot s is `dueAt[s * stride]`. */
  constructor(
    capacity: number,
    private readonly dueAt: Float64Array,
    private readonly stride: number,
    private readonly rankOf: (slot: number) => number,
  ) {
    this.heap = new Uint32Array(capacity);
    this.position = new Uint32Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  has(slot: number): boolean {
    return this.position[slot] !== 0;
  }

  /** The slot due first, or -1 when the heap is empty. */
  peek(): number {
    return this.count === 0 ? -1 : this.heap[0];
  }

  push(slot: number): void {
    invariant(this.position[slot] === 0, `slot ${slot} is already scheduled`);
    invariant(this.count < this.heap.length, 'due heap is full');
    const index = this.count++;
    this.place(slot, index);
    this.siftUp(index);
  }

  /** Restores order after the slot's due time changed (either way). */
  update(slot: number): void {
    const index = this.position[slot] - 1;
    invariant(index >= 0, `slot ${slot} is not scheduled`);
    this.siftDown(this.siftUp(index));
  }

  remove(slot: number): void {
    const index = this.position[slot] - 1;
    invariant(index >= 0, `slot ${slot} is not scheduled`);
    this.position[slot] = 0;
    const last = --this.count;
    if (index === last) return;
    this.place(this.heap[last], index);
    this.siftDown(this.siftUp(index));
  }

  clear(): void {
    for (let i = 0; i < this.count; i++) this.position[this.heap[i]] = 0;
    this.count = 0;
  }

  /** Checks the heap property everywhere (VERIFY sweeps and tests). */
  verify(): void {
    for (let i = 1; i < this.count; i++) {
      invariant(!this.less(this.heap[i], this.heap[(i - 1) >> 1]), `due heap order broken at ${i}`);
    }
    for (let i = 0; i < this.count; i++) {
      invariant(this.position[this.heap[i]] === i + 1, `due heap position broken at ${i}`);
    }
  }

  private less(a: number, b: number): boolean {
    const da = this.dueAt[a * this.stride];
    const db = this.dueAt[b * this.stride];
    return da < db || (da === db && this.rankOf(a) < this.rankOf(b));
  }

  private place(slot: number, index: number): void {
    this.heap[index] = slot;
    this.position[slot] = index + 1;
  }

  private siftUp(index: number): number {
    const slot = this.heap[index];
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = this.heap[parentIndex];
      if (!this.less(slot, parent)) break;
      this.place(parent, index);
      index = parentIndex;
    }
    this.place(slot, index);
    return index;
  }

  private siftDown(index: number): number {
    const slot = this.heap[index];
    for (;;) {
      const left = 2 * index + 1;
      if (left >= this.count) break;
      const right = left + 1;
      const child = right < this.count && this.less(this.heap[right], this.heap[left]) ? right : left;
      if (!this.less(this.heap[child], slot)) break;
      this.place(this.heap[child], index);
      index = child;
    }
    this.place(slot, index);
    return index;
  }
}
