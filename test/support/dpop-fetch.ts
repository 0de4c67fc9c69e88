/**
 * A `fetch` for the official SDKs (openai, @anthropic-ai/sdk) acting as agents through Deputy:
 * every request carries the agent's DPoP-bound token (`Authorization: DPoP …`) and a fresh proof
 * for its method and URL (RFC 9449 §4.2, `htu` without query); whatever credential the SDK set
 * (its placeholder API key) is removed.
 */
import { dpopProof, type DpopKeys } from './agents.js';

export function dpopFetch(keys: DpopKeys, token: () => string, publicOrigin?: string): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    // Behind a load balancer the proof names the public URL (the issuer's), not the instance's.
    const htuOrigin = publicOrigin ?? url.origin;
    const headers = new Headers(request.headers);
    headers.delete('x-api-key');
    headers.set('authorization', `DPoP ${token()}`);
    headers.set('dpop', await dpopProof(keys, `${htuOrigin}${url.pathname}`, { htm: request.method, accessToken: token() }));
    const body = request.body ? await request.arrayBuffer() : undefined;
    return fetch(url, { method: request.method, headers, ...(body ? { body } : {}), ...(init?.signal ? { signal: init.signal } : {}) });
  };
}
