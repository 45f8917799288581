// freePort lives in launch/ (make up uses it too); kept here for the test kit's own imports.
export { freePort } from '../launch/ports.js';
