// GET /token: ferry's side of the registry token flow. `docker login MIRROR` sends Basic
// credentials here; pulls ask for `scope=repository:<name>:pull`. Ferry grants pull
// only. For passthrough registries, unknown credentials are checked with the upstream's
// own token service and carried (encrypted) in the token.
import { Elysia } from "elysia";
import type { Config } from "../config/config.ts";
import { RegistryError } from "../protocol/errors.ts";
import { requestUrl } from "../protocol/request-url.ts";
import { routeName } from "../routing/route.ts";
import type { AccessControl } from "./access.ts";
import { peerOf } from "./client-ip.ts";
import { ANONYMOUS, type Principal } from "./authenticator.ts";
import type { UpstreamCredentialCheck } from "./passthrough.ts";
import { parseScope } from "./tokens.ts";

export function tokenEndpoint(config: Config, access: AccessControl, upstream: UpstreamCredentialCheck) {
  const authenticator = access.authenticator;
  const unauthorized = (message: string) =>
    new Response(JSON.stringify(new RegistryError("UNAUTHORIZED", message).toJSON()), {
      status: 401,
      headers: { "Content-Type": "application/json", "WWW-Authenticate": `Basic realm="${config.auth?.service ?? "ferry"}"` },
    });
  return new Elysia({ name: "token-endpoint" }).get("/token", async ({ request, server }) => {
    if (!authenticator) return Response.json(new RegistryError("UNSUPPORTED", "client auth is not enabled on this mirror").toJSON(), { status: 404 });
    const url = requestUrl(request);
    const names = url.searchParams
      .getAll("scope")
      .flatMap((s) => s.split(" "))
      .map(parseScope)
      .filter((s) => s && s.actions.includes("pull"))
      .map((s) => s!.name);
    let principal: Principal = ANONYMOUS;
    const authorization = request.headers.get("authorization");
    if (authorization) {
      const ip = access.clientIp(request, peerOf(request, server));
      let identified;
      try {
        identified = await access.identify(request, ip);
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        return Response.json(error.toJSON(), { status: error.status, headers: error.headers });
      }
      if ("invalid" in identified) return unauthorized(identified.invalid);
      principal = identified;
      if (principal.unverified) {
        if (!(await acceptedUpstream(principal, names))) {
          access.loginFailed(ip, principal.name);
          return unauthorized("invalid username or password");
        }
        // The upstream vouched for them: the token carries them as checked.
        principal = { ...principal, unverified: undefined };
      }
    }
    const { token, expiresIn, issuedAt } = authenticator.issue(principal, [...new Set(names)]);
    return Response.json({ token, access_token: token, expires_in: expiresIn, issued_at: issuedAt });
  });

  /**
   * Credentials ferry doesn't know are accepted only as upstream credentials of a
   * passthrough registry: one the scopes name accepts them, or (a bare `docker login`,
   * no scope) at least one passthrough registry does. Each registry still checks them
   * itself on every pull, so a login one registry accepts opens nothing on another.
   */
  async function acceptedUpstream(principal: Principal, names: string[]): Promise<boolean> {
    const registries = new Set<string>();
    for (const name of names) {
      try {
        const routed = routeName(name, {}, config.registries);
        if (routed.registry.passthroughAuth) registries.add(routed.registry.name);
      } catch {}
    }
    if (names.length === 0) for (const r of config.registries) if (r.passthroughAuth) registries.add(r.name);
    if (registries.size === 0) return false;
    for (const registry of registries) {
      try {
        if (await upstream.upstreamAccepts(registry, principal.upstream!)) return true;
      } catch {
        // unreachable: this registry can't vouch for them; another may
      }
    }
    return false;
  }
}
