/** Default timeout of one {@link httpJson} request. */
export const HTTP_JSON_TIMEOUT_MS = 10_000;

/** A decoded HTTP response; `body` is parsed JSON, or the raw text when it is not JSON. */
export interface HttpJsonResponse<T = any> {
  status: number;
  headers: Record<string, string>;
  body: T;
}

/**
 * Sends `body` (JSON-encoded, when given) and returns status, lower-case headers and the decoded
 * body. Network failures reject; HTTP error statuses do not (tests assert on them).
 */
export async function httpJson<T = any>(
  method: string,
  url: string,
  body?: unknown,
  options: { timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<HttpJsonResponse<T>> {
  const res = await fetch(url, {
    method,
    headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(options.timeoutMs ?? HTTP_JSON_TIMEOUT_MS),
  });
  const text = await res.text();
  let decoded: unknown = text;
  if (text.length > 0) {
    try {
      decoded = JSON.parse(text);
    } catch {
      decoded = text;
    }
  }
  const headers: Record<string, string> = {};
  res.headers.forEach((value, key) => {
    headers[key] = value;
  });
  return { status: res.status, headers, body: decoded as T };
}
