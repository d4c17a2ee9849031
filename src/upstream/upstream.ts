// A registry's upstream: its endpoints in order. A request goes to the first endpoint
// and falls through to the next on 429, 5xx, network errors and timeouts.
import type { RegistryConfig } from "../config/config.ts";
import type { Logger } from "../observe/logger.ts";
import { TokenCache } from "./auth.ts";
import { Endpoint, type UpstreamRequest } from "./endpoint.ts";
import { failureFromResponse, isFailoverStatus, UpstreamError } from "./errors.ts";

export interface UpstreamResponse {
  response: Response;
  endpoint: Endpoint;
}

export class Upstream {
  readonly endpoints: Endpoint[];

  constructor(
    readonly registry: RegistryConfig,
    tokens: TokenCache,
    private readonly log: Logger,
  ) {
    this.endpoints = registry.endpoints.map((e) => new Endpoint(e, tokens));
  }

  /**
   * The first usable answer. Any status that is not worth failing over on (2xx, 3xx,
   * 401, 403, 404…) is returned as is; when every endpoint fails, the last failure is thrown.
   */
  async request(req: UpstreamRequest, skip?: Endpoint): Promise<UpstreamResponse> {
    let lastError: UpstreamError | undefined;
    const candidates = this.endpoints.filter((e) => e !== skip);
    for (const endpoint of candidates.length ? candidates : this.endpoints) {
      const started = performance.now();
      try {
        const response = await endpoint.request(req);
        this.log.debug({ upstream: endpoint.url, method: req.method, path: req.path, status: response.status, ms: Math.round(performance.now() - started) }, "upstream request");
        if (!isFailoverStatus(response.status)) return { response, endpoint };
        lastError = new UpstreamError(endpoint.url, await failureFromResponse(response));
      } catch (error) {
        if (!(error instanceof UpstreamError)) throw error;
        lastError = error;
      }
      this.log.warn({ upstream: endpoint.url, path: req.path, error: lastError.message }, "upstream endpoint failed");
    }
    throw lastError ?? new UpstreamError(this.registry.name, { kind: "network", message: "no endpoints" });
  }
}
