/**
 * Client SDK: what an application embeds to check the lease tokens the license server issues.
 */
export { verifyLeaseToken } from './verify.ts';
export type { PublishedKey, PublishedKeys, VerifyLeaseOptions } from './verify.ts';
export { TokenError } from '../tokens/errors.ts';
export type { TokenErrorCode } from '../tokens/errors.ts';
export { LEASE_TOKEN_TYPE } from '../tokens/lease-token.ts';
export type { LeaseClaims } from '../tokens/lease-token.ts';
