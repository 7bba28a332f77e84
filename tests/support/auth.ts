import { SignJWT } from 'jose';

export const TEST_JWT_SECRET = 'test-only-supabase-jwt-secret-0123456789abcdef';

/** Signs a Supabase-style access token; every field can be bent to build the negative cases. */
export async function signUserToken(
  userId: string,
  opts: { secret?: string; audience?: string; expiresIn?: string | number; issuer?: string; email?: string } = {},
): Promise<string> {
  const jwt = new SignJWT({ role: 'authenticated', ...(opts.email ? { email: opts.email } : {}) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(userId)
    .setAudience(opts.audience ?? 'authenticated')
    .setIssuedAt()
    .setExpirationTime(opts.expiresIn ?? '1h');
  if (opts.issuer) jwt.setIssuer(opts.issuer);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? TEST_JWT_SECRET));
}
