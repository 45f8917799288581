import { COPY_ROLES, type CopyRole } from '../protocol/cluster.js';

/**
 * The roles of a shard copy and the only edges between them. A copy has
 * exactly one role at a time (ShardCopy.role); every change goes through
 * ShardCopy.transition, which refuses an edge this table lacks. Drawn in
 * docs/replica.md.
 *
 *   starting      loading the snapshot and the log's tail
 *   following     a hot standby: applies the log as it lands, watches the lease
 *   taking-over   the lease lapsed: catching up, taking the lease, appending the fence
 *   serving       the shard's primary: the only writer of its log
 *   stepping-down handing the shard to a named replica (intake closed, draining)
 *   resyncing     an append's outcome is unknown: rebuilding from the log, lease kept
 *   deposed       another writer owns the log: rebuilding, then following
 *   stopped       placement removed the copy or the process stops: refuses every edge
 */
export const ROLES = COPY_ROLES;

export type RoleName = CopyRole;

export const EDGES: Readonly<Record<RoleName, readonly RoleName[]>> = {
  starting: ['following', 'taking-over', 'stopped'],
  // following -> following: the consumer died and is opened again from the copy's position.
  following: ['following', 'taking-over', 'stopped'],
  'taking-over': ['serving', 'following', 'stopped'],
  serving: ['stepping-down', 'resyncing', 'deposed', 'stopped'],
  'stepping-down': ['following', 'resyncing', 'deposed', 'stopped'],
  resyncing: ['serving', 'deposed', 'stopped'],
  deposed: ['following', 'stopped'],
  stopped: [],
};

/** Roles that hold (or are taking) the lease. */
export const LEASED_ROLES: readonly RoleName[] = ['taking-over', 'serving', 'stepping-down', 'resyncing'];

/** What a transition reports: awaited by tests, counted by the metric, logged. */

/** An edge the table does not allow was asked for: a bug in the copy, never a runtime condition. */
export class RoleTransitionError extends Error {
  readonly code = 'role_transition';
  constructor(
    readonly from: RoleName,
    readonly to: RoleName,
    cause: string,
  ) {
    super(`no edge from ${from} to ${to} (${cause})`);
    this.name = 'RoleTransitionError';
  }
}

export function allowed(from: RoleName, to: RoleName): boolean {
  return EDGES[from].includes(to);
}
