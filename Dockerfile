# syntax=docker/dockerfile:1
# Nucleon: build with the dev dependencies and tsc, run with production
# dependencies only, as an unprivileged user. README "Operations → Deployment".

FROM node:20-bookworm-slim AS build
WORKDIR /app
# The lock file alone first, so the dependency layer is reused while only sources change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The operator console (web/), bundled by esbuild into dist/console.
COPY web ./web
COPY scripts/build-console.ts ./scripts/build-console.ts
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    NUCLEON_HEALTHZ_URL=http://127.0.0.1:3032/healthz
# A user of its own (not the image's uid 1000 "node"), owning only the state directories.
RUN groupadd --system --gid 10001 nucleon \
 && useradd --system --uid 10001 --gid nucleon --home-dir /var/lib/nucleon --shell /usr/sbin/nologin nucleon \
 && mkdir -p /var/lib/nucleon/data /var/lib/nucleon/certs /etc/nucleon \
 && chown -R nucleon:nucleon /var/lib/nucleon \
 && chmod 0700 /var/lib/nucleon/data /var/lib/nucleon/certs
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY deploy/config.toml /etc/nucleon/config.toml
# Created before VOLUME with their owner, so new named volumes start writable by nucleon.
VOLUME ["/var/lib/nucleon/data", "/var/lib/nucleon/certs"]
# The listeners on by default: MQTT over TLS, OTA downloads (HTTPS), admin (/metrics, /healthz).
EXPOSE 8883 3030 3032
USER nucleon:nucleon
# No curl in the slim image: Node's own fetch. 503 (degraded) and no answer are both unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.NUCLEON_HEALTHZ_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node is PID 1 and handles SIGTERM itself: listeners close, events drain, InfluxDB is flushed.
ENTRYPOINT ["node", "/app/dist/bin.cjs"]
CMD ["serve", "--config", "/etc/nucleon/config.toml"]
