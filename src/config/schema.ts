// The shape of the config file, as written by people (units as text, optional keys).
// load.ts validates a parsed file against this and turns it into the typed Config.
import { t, type Static } from "elysia";

const Duration = t.Union([t.String(), t.Number()]);
const Size = t.Union([t.String(), t.Number()]);
const Rate = t.Union([t.String(), t.Number()]);

export const EndpointFileSchema = t.Union([
  t.String(),
  t.Object(
    {
      url: t.String(),
      username: t.Optional(t.String()),
      password: t.Optional(t.String()),
      timeout: t.Optional(Duration),
      stall_timeout: t.Optional(Duration),
      proxy: t.Optional(t.String()),
      headers: t.Optional(t.Record(t.String(), t.String())),
      allow_private_redirects: t.Optional(t.Boolean()),
      repository_prefix: t.Optional(t.String()),
      ns: t.Optional(t.String()),
      max_bandwidth: t.Optional(Rate),
      user_agent: t.Optional(t.String({ minLength: 1 })),
    },
    { additionalProperties: false },
  ),
]);

// [[registry.tag_policy]]: freshness for the tags of some repositories (first match wins).
export const TagPolicyFileSchema = t.Object(
  {
    repositories: t.Union([t.String(), t.Array(t.String())]),
    tag_ttl: t.Optional(Duration),
    immutable_tags: t.Optional(t.Array(t.String())),
  },
  { additionalProperties: false },
);

export const RegistryFileSchema = t.Object(
  {
    name: t.String(),
    enabled: t.Optional(t.Boolean()),
    hosts: t.Optional(t.Array(t.String())),
    endpoints: t.Optional(t.Array(EndpointFileSchema)),
    blob_endpoints: t.Optional(t.Array(EndpointFileSchema)),
    username: t.Optional(t.String()),
    password: t.Optional(t.String()),
    timeout: t.Optional(Duration),
    stall_timeout: t.Optional(Duration),
    proxy: t.Optional(t.String()),
    allow_private_redirects: t.Optional(t.Boolean()),
    max_bandwidth: t.Optional(Rate),
    user_agent: t.Optional(t.String({ minLength: 1 })),
    anonymous: t.Optional(t.Boolean()),
    passthrough_auth: t.Optional(t.Boolean()),
    allow: t.Optional(t.Array(t.String())),
    deny: t.Optional(t.Array(t.String())),
    max_concurrent: t.Optional(t.Integer({ minimum: 1 })),
    cooldown: t.Optional(Duration),
    failure_cooldown: t.Optional(Duration),
    failure_threshold: t.Optional(t.Integer({ minimum: 1 })),
    tag_ttl: t.Optional(Duration),
    immutable_tags: t.Optional(t.Array(t.String())),
    tag_policy: t.Optional(t.Array(TagPolicyFileSchema)),
  },
  { additionalProperties: false },
);

export const ConfigFileSchema = t.Object(
  {
    server: t.Optional(
      t.Object(
        {
          listen: t.Optional(t.String()),
          public_url: t.Optional(t.String()),
          tls_listen: t.Optional(t.String()),
          idle_timeout: t.Optional(Duration),
          memory_limit: t.Optional(Size),
          peer_url: t.Optional(t.String()),
          tls_cert: t.Optional(t.String()),
          tls_key: t.Optional(t.String()),
          // [server.acme]: a certificate from an ACME CA (Let's Encrypt), renewed in the process.
          acme: t.Optional(
            t.Object(
              {
                domains: t.Optional(t.Array(t.String())),
                email: t.Optional(t.String()),
                directory_url: t.Optional(t.String()),
                eab_kid: t.Optional(t.String()),
                eab_hmac_key: t.Optional(t.String()),
                storage: t.Optional(t.String()),
                ca_file: t.Optional(t.String()),
                redirect_http: t.Optional(t.Boolean()),
                renew_before: t.Optional(Duration),
                retry_min: t.Optional(Duration),
                retry_max: t.Optional(Duration),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    cache: t.Optional(
      t.Object(
        {
          dir: t.Optional(t.String()),
          max_size: t.Optional(Size),
          tag_ttl: t.Optional(Duration),
          negative_ttl: t.Optional(Duration),
          referrers_ttl: t.Optional(Duration),
          max_downloads: t.Optional(t.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    auth: t.Optional(
      t.Object(
        {
          htpasswd: t.Optional(t.String()),
          tokens: t.Optional(t.Array(t.String())),
          token_secret: t.Optional(t.String()),
          token_ttl: t.Optional(Duration),
          anonymous: t.Optional(t.Boolean()),
          service: t.Optional(t.String()),
        },
        { additionalProperties: false },
      ),
    ),
    limits: t.Optional(
      t.Object(
        {
          requests_per_minute: t.Optional(t.Integer({ minimum: 1 })),
          concurrent_downloads: t.Optional(t.Integer({ minimum: 1 })),
          bytes: t.Optional(t.String()),
          bandwidth: t.Optional(Rate),
          exempt: t.Optional(t.Array(t.String())),
          authenticated_exempt: t.Optional(t.Boolean()),
          trusted_proxies: t.Optional(t.Array(t.String())),
          block_user_agents: t.Optional(t.Array(t.String())),
          login_failures: t.Optional(t.String()),
          token_requests_per_minute: t.Optional(t.Integer({ minimum: 1 })),
          admin_requests_per_minute: t.Optional(t.Integer({ minimum: 1 })),
          search_requests_per_minute: t.Optional(t.Integer({ minimum: 1 })),
          ipv6_prefix: t.Optional(t.Integer({ minimum: 1, maximum: 128 })),
        },
        { additionalProperties: false },
      ),
    ),
    redis: t.Optional(
      t.Object(
        {
          url: t.Optional(t.String()),
          key_prefix: t.Optional(t.String()),
          sentinels: t.Optional(t.Array(t.String())),
          sentinel_name: t.Optional(t.String()),
          cluster_nodes: t.Optional(t.Array(t.String())),
          lock_lease: t.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    s3: t.Optional(
      t.Object(
        {
          endpoint: t.Optional(t.String()),
          bucket: t.Optional(t.String()),
          region: t.Optional(t.String()),
          access_key_id: t.Optional(t.String()),
          secret_access_key: t.Optional(t.String()),
          force_path_style: t.Optional(t.Boolean()),
          prefix: t.Optional(t.String()),
          redirect: t.Optional(t.Boolean()),
          redirect_ttl: t.Optional(Duration),
          public_base_url: t.Optional(t.String()),
        },
        { additionalProperties: false },
      ),
    ),
    log: t.Optional(
      t.Object({ level: t.Optional(t.String()) }, { additionalProperties: false }),
    ),
    // [search]: the /v1/search relay behind `docker search MIRROR/term` and the landing page.
    search: t.Optional(
      t.Object(
        {
          enabled: t.Optional(t.Boolean()),
          upstream: t.Optional(t.String()),
          timeout: t.Optional(Duration),
          cache_ttl: t.Optional(Duration),
        },
        { additionalProperties: false },
      ),
    ),
    registry: t.Optional(t.Array(RegistryFileSchema)),
  },
  { additionalProperties: false },
);

export type ConfigFile = Static<typeof ConfigFileSchema>;
export type RegistryFile = Static<typeof RegistryFileSchema>;
export type EndpointFile = Static<typeof EndpointFileSchema>;
export type TagPolicyFile = Static<typeof TagPolicyFileSchema>;
