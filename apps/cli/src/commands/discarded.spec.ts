import { formatDiscarded, summarizeChanges } from './discarded';

describe('flotilla discarded', () => {
  it('prints one row per transaction with times and a summary of its changes, and warns about silent replicas', () => {
    const { out, warnings } = formatDiscarded({
      discarded: [
        {
          node: 'replica-0', lsn: '41', epoch: 2, ts: Date.UTC(2026, 0, 1), discardedAt: Date.UTC(2026, 0, 1, 0, 0, 5),
          changes: [{ op: 'ins', t: 'items' }, { op: 'ins', t: 'items' }, { op: 'del', t: 'tags' }],
        },
      ],
      unavailable: [{ node: 'replica-2', reason: 'timeout' }],
    });
    expect(out).toEqual([
      'node       lsn  epoch  committed                 discarded                 changes',
      '---------  ---  -----  ------------------------  ------------------------  ----------------------',
      'replica-0  41       2  2026-01-01T00:00:00.000Z  2026-01-01T00:00:05.000Z  ins items ×2, del tags',
    ]);
    expect(warnings).toEqual(['warning: no list from replica-2 (timeout): its discarded transactions are not shown']);
  });

  it('says so when nothing was discarded', () => {
    expect(formatDiscarded({ discarded: [], unavailable: [] })).toEqual({ out: ['no discarded transactions'], warnings: [] });
  });

  it('summarizes DDL and empty change lists', () => {
    expect(summarizeChanges([{ op: 'ddl' }, { op: 'upd', t: 't' }])).toBe('ddl, upd t');
    expect(summarizeChanges([])).toBe('(none)');
  });
});
