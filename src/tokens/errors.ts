/**
 * Failure codes for token, key and claims handling. They are stable strings so callers (the HTTP
 * layer, the client SDK) can branch on them without parsing messages.
 */
export type TokenErrorCode =
  | 'malformed'
  | 'wrong_purpose'
  | 'bad_signature'
  | 'bad_footer'
  | 'bad_claims'
  | 'bad_key'
  | 'expired'
  | 'not_yet_valid'
  | 'wrong_audience'
  | 'wrong_type'
  | 'unknown_key';

/**
 * The only error the tokens layer throws on purpose. `code` is for programs, `message` is for the
 * person reading a log: it names what was wrong and, where it helps, what was expected.
 */
export class TokenError extends Error {
  readonly code: TokenErrorCode;

  constructor(code: TokenErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenError';
    this.code = code;
  }
}

/** Shortens untrusted text before it goes into an error message, so logs stay readable. */
export function preview(text: string, max = 40): string {
  const shown = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(shown);
}
