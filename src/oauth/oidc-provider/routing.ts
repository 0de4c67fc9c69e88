/**
 * How oidc-provider's router (9.x `lib/helpers/router.js`) matches a request path to one of its
 * static routes: case-insensitively (it folds both to upper case) and, failing an exact match,
 * without one trailing `/`. So `/TOKEN` and `/token/` reach the token endpoint. A middleware
 * installed with `provider.use` runs before that routing and sees the raw path: when it keys on a
 * route's path it must match the same way, or a request spelled differently skips it.
 *
 * @module
 */

/**
 * Whether the router sends a request for `path` to the static route at `routePath`, or (with
 * `under`) to a route below it (`routePath/...`). Upper-casing both sides matches every path the
 * router's folding matches, and possibly a few non-ASCII spellings more, which reach no route.
 */
export function routedTo(path: string, routePath: string, options: { under?: boolean } = {}): boolean {
  const given = path.toUpperCase();
  const route = routePath.toUpperCase();
  if (given === route || given === `${route}/`) return true;
  return options.under === true && given.startsWith(`${route}/`);
}
