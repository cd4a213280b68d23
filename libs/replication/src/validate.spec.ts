import { PROTOCOL_VERSION } from '@flotilla/protocol';
import { IDEMPOTENCY_KEY_CHARS_MAX, validateWriteRequest } from './validate';

const write = (idempotencyKey: string) => ({ type: 'write', v: PROTOCOL_VERSION, statements: [{ sql: 'SELECT 1' }], idempotencyKey });

test('an idempotency key is measured in characters as the gateway counts them: 256 emoji pass, 257 letters do not', () => {
  const emoji = '\u{1F600}'.repeat(IDEMPOTENCY_KEY_CHARS_MAX); // 512 UTF-16 units
  expect(validateWriteRequest(write(emoji)).idempotencyKey).toBe(emoji);
  expect(() => validateWriteRequest(write('k'.repeat(IDEMPOTENCY_KEY_CHARS_MAX + 1)))).toThrow(/1 to 256 characters/);
  expect(() => validateWriteRequest(write(''))).toThrow(/1 to 256 characters/);
});
