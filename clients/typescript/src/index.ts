/**
 * The Big Picture license client for Node.js (20 and later): lease a seat from the local license
 * server, keep it renewed, verify every token offline, give the seat back at exit.
 *
 * The token verifier is the server's own (src/tokens), bundled in at build time: one
 * implementation, as strict on the client as on the server.
 */
export { LicenseClient, Lease, Subject } from './client.ts';
export type { LicenseClientOptions, LeaseRequest, LeaseEvents, LeaseState } from './client.ts';
export { LicenseError } from './errors.ts';
export { verifyLeaseToken } from './verify.ts';
export type { PublishedKey, PublishedKeys, VerifyLeaseOptions } from './verify.ts';
export { TokenError } from '../../../src/tokens/errors.ts';
export type { TokenErrorCode } from '../../../src/tokens/errors.ts';
export { LEASE_TOKEN_TYPE } from '../../../src/tokens/lease-token.ts';
export type { LeaseClaims } from '../../../src/tokens/lease-token.ts';
