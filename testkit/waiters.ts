/** The waiters of launch/ (ManagedProcess), shared with tests. */
export { Waiters } from '../launch/waiters.js';
