/** What a socket needs for it: uWS's `cork` (every send inside it leaves in one write). */
type Corkable = { cork(cb: () => void): unknown };

/**
 * Frames that become ready together (the bid results of every engine reply
 * read in one turn of the event loop), held until the turn's I/O is done and
 * then written to each socket in one corked write, instead of a write per
 * frame: a syscall each, and on loopback the receiver's TCP work too. In
 * order per socket; nothing waits for a timer. Bounded by what the owner
 * queues in one turn (answers to commands in flight).
 */
export class TurnWrites<S extends Corkable, F> {
  private readonly due = new Map<S, F[]>();
  private scheduled = false;

  constructor(
    /** Sends a socket's frames; called inside its cork. */
    private readonly write: (socket: S, frames: F[]) => void,
    /** Whether the socket may still be used (uWS throws on a closed one). */
    private readonly isOpen: (socket: S) => boolean,
  ) {}

  queue(socket: S, frame: F): void {
    if (!this.isOpen(socket)) return;
    const frames = this.due.get(socket);
    if (frames) frames.push(frame);
    else this.due.set(socket, [frame]);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The socket closed: what it had waiting is dropped. */
  forget(socket: S): void {
    this.due.delete(socket);
  }

  private flush(): void {
    this.scheduled = false;
    for (const [socket, frames] of this.due) {
      if (this.isOpen(socket)) socket.cork(() => this.write(socket, frames));
    }
    this.due.clear();
  }
}
