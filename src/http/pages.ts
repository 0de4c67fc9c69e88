/**
 * The few server-rendered pages Deputy shows a user's browser (sign-in, consent, connect): plain
 * HTML, no script, no external resource (`Content-Security-Policy: default-src 'none'`), with a
 * language, a title and labelled controls (WCAG 2.2: 3.1.1, 2.4.2, 1.3.1).
 *
 * @module
 */
import type Koa from 'koa';
import { noStore } from '../util/http.js';

/** HTML-escapes text for element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A whole page: `title` is text, `html` is already-escaped markup. */
export function page(title: string, html: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title></head><body><main><h1>${escapeHtml(title)}</h1>${html}</main></body></html>`;
}

/** Sends a page: HTML, never cached, never framed (clickjacking on a consent button), no script. */
export function sendPage(ctx: Koa.Context, title: string, html: string, status = 200): void {
  ctx.status = status;
  ctx.type = 'text/html; charset=utf-8';
  noStore(ctx);
  // form-action also governs the redirects that follow a submission (CSP3 §6.4.4 in Chromium): the
  // consent form ends at the client's redirect URI, on any origin.
  ctx.set('Content-Security-Policy', "default-src 'none'; form-action 'self' http: https:; frame-ancestors 'none'");
  ctx.set('X-Frame-Options', 'DENY');
  ctx.body = page(title, html);
}
