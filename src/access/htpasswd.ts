// htpasswd files (Apache format) with bcrypt entries, as `htpasswd -B` writes them.
// Bun.password verifies bcrypt; htpasswd's "$2y$" prefix is the same algorithm as "$2b$".

export type Htpasswd = Map<string, string>;

export function parseHtpasswd(text: string): Htpasswd {
  const users: Htpasswd = new Map();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const hash = line.slice(colon + 1);
    // Only bcrypt: MD5-crypt and SHA1 entries are too weak to accept on the internet.
    if (/^\$2[aby]\$\d\d\$/.test(hash)) users.set(line.slice(0, colon), hash);
  }
  return users;
}

export async function verifyPassword(users: Htpasswd, username: string, password: string): Promise<boolean> {
  const hash = users.get(username);
  if (!hash) {
    // Same work for unknown users, so timing does not reveal which names exist.
    await Bun.password.verify(password, DUMMY_HASH).catch(() => false);
    return false;
  }
  try {
    return await Bun.password.verify(password, hash.replace(/^\$2y\$/, "$2b$"), "bcrypt");
  } catch {
    return false;
  }
}

const DUMMY_HASH = "$2b$10$CwTycUXWue0Thq9StjUM0uJ8.j1ENxpe7iY0nxcImwh2z4QmWtYy2";
