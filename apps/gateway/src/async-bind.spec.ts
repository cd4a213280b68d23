import { AsyncResource, executionAsyncId, executionAsyncResource } from 'node:async_hooks';
import { installCheapAsyncBind } from './async-bind';

beforeAll(() => installCheapAsyncBind());

test('a bound function runs in the resource scope with the caller this, arguments and result', () => {
  const r = new AsyncResource('test');
  const seen: unknown[] = [];
  const fn = function (this: unknown, a: number, b: number) {
    seen.push(this, executionAsyncResource(), a, b);
    return a + b;
  };
  const bound = r.bind(fn);
  const self = { x: 1 };
  expect(bound.call(self, 2, 3)).toBe(5);
  expect(seen).toEqual([self, r, 2, 3]);
  expect(bound.length).toBe(2);
  expect(executionAsyncResource()).not.toBe(r);
});

test('with thisArg the given this wins; a throw propagates and leaves the scope', () => {
  const r = new AsyncResource('test');
  const outside = executionAsyncId();
  const self = { y: 2 };
  const bindWithThis = r.bind.bind(r) as unknown as (fn: () => unknown, thisArg: unknown) => () => unknown;
  expect(bindWithThis(function (this: unknown) { return this; }, self).call({ other: true })).toBe(self);
  expect(() => r.bind(() => { throw new Error('boom'); })()).toThrow('boom');
  expect(executionAsyncId()).toBe(outside);
  expect(() => r.bind(42 as unknown as () => void)).toThrow(TypeError);
});
