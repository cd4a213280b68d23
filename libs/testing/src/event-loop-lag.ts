/**
 * The largest event-loop delay of a Flotilla process since the previous call, in ms, from its
 * /metrics (prom-client's `nodejs_eventloop_lag_max_seconds`, which a scrape resets): call once to
 * start a window, once more to read it.
 */
export async function eventLoopLagMaxMs(httpUrl: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const m = /^nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text);
  if (!m) throw new Error(`no nodejs_eventloop_lag_max_seconds in ${httpUrl}/metrics`);
  return Number(m[1]) * 1000;
}
