/**
 * Pure logic of DPoP URL comparison and nonces: the RFC 3986 §6.2.2-§6.2.3 normalization every
 * surface uses for `htu`, and nonces computed exactly as oidc-provider computes its own.
 */
import { randomBytes } from 'node:crypto';
import ServerChallenge from 'oidc-provider/lib/helpers/challenge.js';
import { describe, expect, it } from 'vitest';
import { DpopNonces, sameHtu } from '../../src/oauth/dpop.js';
import { normalizeHttpUrl } from '../../src/oauth/uri.js';

const TOKEN = 'https://deputy.example.com/token';

describe('normalizeHttpUrl (RFC 3986 §6.2.2, §6.2.3; RFC 9449 §4.3)', () => {
  it.each([
    ['HTTPS://DEPUTY.EXAMPLE.COM/token', 'scheme and host case'],
    ['https://Deputy.Example.Com/token', 'host case'],
    ['https://deputy.example.com:443/token', 'default port'],
    ['https://deputy.example.com:/token', 'empty port'],
    ['https://deputy.example.com/%74oken', 'encoded unreserved character'],
    ['https://deputy.example.com/%74%6F%6B%65%6E', 'every character encoded'],
    ['https://deputy.example.com/a/../token', 'dot-dot segment'],
    ['https://deputy.example.com/./token', 'dot segment'],
    ['https://deputy.example.com/%2E/token', 'encoded dot segment'],
    ['https://deputy.example.com/token?x=1', 'query ignored'],
    ['https://deputy.example.com/token#frag', 'fragment ignored'],
    ['https://deputy.example.com/token?', 'empty query ignored'],
  ])('%s equals the token endpoint (%s)', (htu) => {
    expect(sameHtu(htu, TOKEN)).toBe(true);
  });

  it.each([
    ['http://deputy.example.com/token', 'another scheme'],
    ['https://deputy.example.com:8443/token', 'another port'],
    ['https://deputy.example.com/token/', 'a trailing slash'],
    ['https://deputy.example.com/Token', 'path case'],
    ['https://deputy.example.com//token', 'an empty segment'],
    ['https://deputy.example.com/tok%2Fen', 'an encoded slash'],
    ['https://evil.example.com/token', 'another host'],
    ['https://deputy.example.com.evil.example/token', 'a suffixed host'],
    ['https://user@deputy.example.com/token', 'user information'],
    ['https://deputy.example.com/%zztoken', 'malformed percent-encoding'],
    ['https://deputy.example.com\\token', 'a backslash (not a path separator in RFC 3986)'],
    ['//deputy.example.com/token', 'no scheme'],
    ['ftp://deputy.example.com/token', 'not http(s)'],
    ['https:/token', 'no authority'],
    ['', 'empty'],
  ])('%s differs from the token endpoint (%s)', (htu) => {
    expect(sameHtu(htu, TOKEN)).toBe(false);
  });

  it('produces the normal form', () => {
    expect(normalizeHttpUrl('HTTP://Example.COM:80')).toBe('http://example.com/');
    expect(normalizeHttpUrl('http://example.com:8080/a/./b/../c/%7euser/%c3%a9?q#f')).toBe('http://example.com:8080/a/c/~user/%C3%A9');
    expect(normalizeHttpUrl('https://[2001:DB8::1]:443/x')).toBe('https://[2001:db8::1]/x');
    expect(normalizeHttpUrl('https://example.com/a b/é|')).toBe('https://example.com/a%20b/%C3%A9%7C');
    expect(normalizeHttpUrl('https://example.com/../../x')).toBe('https://example.com/x');
  });

  it('compares encoded and raw spellings of characters that must be encoded', () => {
    expect(sameHtu('https://example.com/a%20b', 'https://example.com/a b')).toBe(true);
    expect(sameHtu('https://example.com/%C3%A9', 'https://example.com/é')).toBe(true);
    expect(sameHtu('https://example.com/%c3%a9', 'https://example.com/%C3%A9')).toBe(true);
  });
});

describe('DpopNonces (RFC 9449 §8): one mechanism with oidc-provider', () => {
  it('hands out and accepts exactly the nonces oidc-provider 9.13.3 does for the same secret', () => {
    const secret = randomBytes(32);
    const ours = new DpopNonces(secret);
    const theirs = new ServerChallenge(secret, 'DPoP');
    const now = Date.now() / 1000;
    expect(ours.next(now)).toBe(theirs.nextChallenge());
    expect(theirs.checkChallenge(ours.next(now))).toBe(true);
    expect(ours.check(theirs.nextChallenge(), now)).toBe(true);
  });

  it('accepts nonces of the two steps on either side, not older or newer ones, nor another secret\'s', () => {
    const nonces = new DpopNonces(randomBytes(32));
    const t = 1_800_000_000;
    const issued = nonces.next(t); // step +1
    expect(nonces.check(issued, t)).toBe(true);
    expect(nonces.check(issued, t + 3 * 60)).toBe(true); // issued is now step -2
    expect(nonces.check(issued, t + 4 * 60)).toBe(false);
    expect(nonces.check(issued, t - 2 * 60)).toBe(false);
    expect(new DpopNonces(randomBytes(32)).check(issued, t)).toBe(false);
    expect(nonces.check('', t)).toBe(false);
  });
});
