// Shared-secret check. Both sides are hashed first so the comparison takes the same time
// whatever the length or content of the guess (Workers has no standard timingSafeEqual).

const encoder = new TextEncoder();

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Returns a checker for one secret; the secret's own hash is computed once. */
export function secretChecker(secret: string): (given: string) => Promise<boolean> {
  const expected = sha256(secret);
  return async (given) => {
    const [a, b] = await Promise.all([sha256(given), expected]);
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
    return diff === 0;
  };
}
