# One image for every Flotilla process; the entrypoint picks the app:
#   docker run IMAGE replica | monitor | gateway | relay | cli [args...]
# (the Helm chart runs `node dist/apps/<app>/src/main.js` directly, which is the same thing).
# Build: docker build -t ghcr.io/flotilla/flotilla:0.1.0 .

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: compile TypeScript with the dev dependencies, then keep production ones only --------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
# better-sqlite3 falls back to a source build when no prebuilt binary matches.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY libs ./libs
COPY apps ./apps
# scripts/build-native.sh compiles the statement-deadline extension (libs/storage/native) with cc.
COPY scripts/build-native.sh ./scripts/build-native.sh
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime: no compilers, no npm cache, non-root, read-only friendly ---------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    FLOTILLA_DATA_DIR=/data \
    FLOTILLA_HTTP_HOST=0.0.0.0 \
    FLOTILLA_HTTP_PORT=8080 \
    SQLITE_TMPDIR=/tmp
WORKDIR /app
COPY --from=build --chown=root:root /src/package.json ./package.json
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
# flotilla-entrypoint <app> [args...]: runs dist/apps/<app>/src/main.js.
RUN printf '%s\n' \
      '#!/bin/sh' \
      'set -eu' \
      'app="${1:-}"' \
      'case "$app" in' \
      '  replica|monitor|gateway|relay|cli) shift; exec node "/app/dist/apps/$app/src/main.js" "$@" ;;' \
      '  *) echo "usage: <image> replica|monitor|gateway|relay|cli [args...]" >&2; exit 64 ;;' \
      'esac' >/usr/local/bin/flotilla-entrypoint \
 && chmod 0755 /usr/local/bin/flotilla-entrypoint
RUN groupadd --system --gid 10001 flotilla \
 && useradd --system --uid 10001 --gid flotilla --home-dir /nonexistent --shell /usr/sbin/nologin flotilla \
 && mkdir -p /data && chown flotilla:flotilla /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flotilla-entrypoint"]
CMD ["gateway"]
