import { Packr, Unpackr } from 'msgpackr';

/** Client msgpack is plain maps both ways (no msgpackr records), for any client library. */
export const clientPackr = new Packr({ useRecords: false });
export const clientUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
