import { ID_MAX } from '../protocol/index.js';
import { ApiError } from './errors.js';

/**
 * Checks of client input. Each failure throws an ApiError `invalid_request`
 * naming the field, so a client learns what to fix. Amounts are only checked
 * to be numbers: whether a number is a valid amount is the engine's business
 * (`invalid_amount`, logged like any other rejection).
 */
export type Fields = Record<string, unknown>;

export function object(value: unknown, what = 'body'): Fields {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new ApiError('invalid_request', `${what} must be an object`);
  return value as Fields;
}

export function id(fields: Fields, name: string): number {
  const value = fields[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
    throw new ApiError('invalid_request', `${name} must be a positive integer below 2^53`);
  return value;
}

export function optionalId(fields: Fields, name: string): number | undefined {
  return fields[name] === undefined || fields[name] === null ? undefined : id(fields, name);
}

/** Any JSON/msgpack number, for the engine to judge (NaN and fractions included). */
export function amount(fields: Fields, name: string): number {
  const value = fields[name];
  if (typeof value !== 'number') throw new ApiError('invalid_request', `${name} must be a number (cents)`);
  return value;
}

export function optionalNumber(fields: Fields, name: string): number | undefined {
  const value = fields[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw new ApiError('invalid_request', `${name} must be a number`);
  return value;
}

export function string(fields: Fields, name: string, limits: { min?: number; max: number; pattern?: RegExp }): string {
  const value = fields[name];
  if (typeof value !== 'string') throw new ApiError('invalid_request', `${name} must be a string`);
  if (value.length < (limits.min ?? 0) || value.length > limits.max)
    throw new ApiError('invalid_request', `${name} must be ${limits.min ?? 0} to ${limits.max} characters`);
  if (limits.pattern && !limits.pattern.test(value))
    throw new ApiError('invalid_request', `${name} has characters that are not allowed`);
  return value;
}

export function optionalString(fields: Fields, name: string, max: number): string | undefined {
  return fields[name] === undefined || fields[name] === null ? undefined : string(fields, name, { max });
}

/** An id in a path or query string: digits only, below 2^53. */
export function idParam(text: string, name: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(text)) throw new ApiError('invalid_request', `${name} must be a positive integer`);
  const value = Number(text);
  if (value > ID_MAX) throw new ApiError('invalid_request', `${name} must be below 2^53`);
  return value;
}

/** An optional non-negative integer in a query string. */
export function optionalCountParam(text: string, name: string, max = ID_MAX): number | undefined {
  if (text === '') return undefined;
  if (!/^[0-9]{1,16}$/.test(text) || Number(text) > max)
    throw new ApiError('invalid_request', `${name} must be an integer from 0 to ${max}`);
  return Number(text);
}

/** A list of auction ids of bounded length. */
export function idList(fields: Fields, name: string, max: number): number[] {
  const value = fields[name];
  if (!Array.isArray(value) || value.length === 0 || value.length > max)
    throw new ApiError('invalid_request', `${name} must be an array of 1 to ${max} ids`);
  for (const v of value)
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
      throw new ApiError('invalid_request', `${name} must hold positive integers`);
  return value as number[];
}
