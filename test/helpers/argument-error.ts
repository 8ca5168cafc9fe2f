import { expect } from 'vitest';
import { ArgumentError } from '../../src/stream/errors.js';

/** `fn` throws an ArgumentError (code ERR_ARGUMENT), with a message matching `message` if given. */
export function expectArgumentError(fn: () => unknown, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, `no error from ${fn.toString()}`).toBeInstanceOf(ArgumentError);
  expect((caught as ArgumentError).code).toBe('ERR_ARGUMENT');
  if (message) expect((caught as Error).message).toMatch(message);
}
