import { describe, expect, it } from 'vitest';
import { authorizationServerMetadata } from '../../src/oauth/metadata.js';

const served = {
  issuer: 'https://deputy.example.com',
  token_endpoint: 'https://deputy.example.com/token',
  jwks_uri: 'https://deputy.example.com/jwks',
  introspection_endpoint: 'https://deputy.example.com/introspect',
  scopes_supported: ['deputy:admin', 'openid', 'offline_access'],
  response_types_supported: ['none'],
  grant_types_supported: ['client_credentials'],
  token_endpoint_auth_methods_supported: ['private_key_jwt'],
  token_endpoint_auth_signing_alg_values_supported: ['ES256'],
  claims_supported: ['sub', 'sid', 'auth_time'],
  subject_types_supported: ['public'],
  id_token_signing_alg_values_supported: ['ES256'],
  some_future_member_supported: true,
  receipts_jwks_uri: 'https://deputy.example.com/receipts/jwks',
};

describe('authorizationServerMetadata (RFC 8414 §2)', () => {
  const metadata = authorizationServerMetadata(served, { scopes: ['deputy:admin', 'authzen:evaluate'], extraMembers: ['receipts_jwks_uri'] });

  it('keeps only allow-listed and declared extra members: OIDC and unknown members are dropped', () => {
    for (const member of ['claims_supported', 'subject_types_supported', 'id_token_signing_alg_values_supported', 'some_future_member_supported']) {
      expect(metadata).not.toHaveProperty(member);
    }
    expect(metadata.receipts_jwks_uri).toBe(served.receipts_jwks_uri);
    expect(metadata.issuer).toBe(served.issuer);
  });

  it('lists only Deputy\'s scopes, and no response type', () => {
    expect(metadata.scopes_supported).toEqual(['deputy:admin']);
    expect(metadata.response_types_supported).toEqual([]);
  });

  it('names the client authentication of an endpoint only when the endpoint is advertised', () => {
    expect(metadata.introspection_endpoint_auth_methods_supported).toEqual(['private_key_jwt']);
    expect(metadata.introspection_endpoint_auth_signing_alg_values_supported).toEqual(['ES256']);
    expect(metadata).not.toHaveProperty('revocation_endpoint_auth_methods_supported');
    expect(metadata).not.toHaveProperty('revocation_endpoint_auth_signing_alg_values_supported');
  });
});

describe('authorizationServerMetadata with the authorization endpoint (issue 13 §2)', () => {
  const codeFlow = {
    ...served,
    authorization_endpoint: 'https://deputy.example.com/auth',
    grant_types_supported: ['client_credentials', 'authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    client_id_metadata_document_supported: true,
    request_parameter_supported: true,
  };

  it('serves the code-flow members only when the endpoint is on', () => {
    const on = authorizationServerMetadata(codeFlow, { scopes: ['deputy:admin'], extraMembers: [], authorizationEndpoint: true });
    expect(on).toMatchObject({
      authorization_endpoint: 'https://deputy.example.com/auth',
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
      client_id_metadata_document_supported: true,
      grant_types_supported: ['client_credentials', 'authorization_code', 'refresh_token'],
    });
    expect(on).not.toHaveProperty('request_parameter_supported');
    const off = authorizationServerMetadata(codeFlow, { scopes: ['deputy:admin'], extraMembers: [] });
    for (const member of ['authorization_endpoint', 'code_challenge_methods_supported', 'authorization_response_iss_parameter_supported', 'client_id_metadata_document_supported']) {
      expect(off).not.toHaveProperty(member);
    }
    expect(off.response_types_supported).toEqual([]);
    expect(off.grant_types_supported).toEqual(['client_credentials']);
  });
});
