/**
 * Offline verification of exported pins (`GET /admin/mcp-servers/{id}/pins`): an auditor, or
 * an agent's operator, checks every pin against the keys it trusts — not the export's own
 * claims — and every exported definition against its pin's digest. Like receipts
 * (src/audit/verify.ts), nothing here trusts Deputy's database.
 *
 * @module
 */
import type { JSONWebKeySet } from 'jose';
import { toolDigest, ToolPinError, verifyToolPin, type PinSigner } from './tool-pin.js';

/** The export as the admin API serves it (only the members verification reads). */
export interface PinExport {
  server: string;
  signers: ReadonlyArray<{ issuer: string; jwks: JSONWebKeySet; server?: string }>;
  pins: ReadonlyArray<{ tool: string; digest: string; jws: string; definition?: Record<string, unknown> | null }>;
}

export interface PinProblem {
  tool: string;
  /** `signature`: the pin does not verify with a trusted key; `claims`: its claims disagree with the export's members; `definition`: the definition does not have the pin's digest. */
  code: 'signature' | 'claims' | 'definition';
  message: string;
}

export interface PinReport {
  ok: boolean;
  server: string;
  verified: number;
  problems: PinProblem[];
}

/**
 * Verifies every pin of `exported` with `signers` (default: the export's own signers — pass
 * keys obtained independently, e.g. `/receipts/jwks` and the publisher's JWKS, to trust nothing
 * in the file).
 */
export async function verifyPinExport(exported: PinExport, signers: readonly PinSigner[] = exported.signers): Promise<PinReport> {
  const problems: PinProblem[] = [];
  let verified = 0;
  for (const pin of exported.pins) {
    let claims;
    try {
      claims = await verifyToolPin(pin.jws, exported.server, signers);
    } catch (err) {
      problems.push({ tool: pin.tool, code: 'signature', message: err instanceof ToolPinError ? err.message : 'the pin does not verify' });
      continue;
    }
    if (claims.tool !== pin.tool || claims.digest !== pin.digest) {
      problems.push({ tool: pin.tool, code: 'claims', message: `the signed claims name "${claims.tool}" with ${claims.digest}` });
      continue;
    }
    if (pin.definition) {
      let digest: string;
      try {
        digest = toolDigest(pin.definition, claims.covers);
      } catch (err) {
        // A definition with no digest (no name, not I-JSON) is a problem of the file, reported as one.
        if (!(err instanceof ToolPinError)) throw err;
        problems.push({ tool: pin.tool, code: 'definition', message: `the exported definition has no digest: ${err.message}` });
        continue;
      }
      if (digest !== claims.digest) {
        problems.push({ tool: pin.tool, code: 'definition', message: 'the exported definition does not have the pinned digest' });
        continue;
      }
    }
    verified += 1;
  }
  return { ok: problems.length === 0, server: exported.server, verified, problems };
}
