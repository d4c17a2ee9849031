// WWW-Authenticate challenges: the relay parses them to swap the realm for its own
// /token and formats them back. The parser is ferry's own (pure, Workers-safe TS).
export { formatChallenges, parseChallenges, type Challenge } from "../../src/protocol/challenge.ts";
import type { Challenge } from "../../src/protocol/challenge.ts";

export function isBearer(challenge: Challenge): boolean {
  return challenge.scheme === "bearer";
}
