/** Small HTTP helpers for tests: a response body as loosely typed JSON, for assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- assertion-side only
export type Json = Record<string, any>;

export async function json<T = Json>(res: Response): Promise<T> {
  return (await res.json()) as T;
}
