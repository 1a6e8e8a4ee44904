# The keeper worker image: `keeper worker`, with the built-in demo handler, or with your
# handlers when KEEPER_HANDLERS names a handler module (KeeperCluster's handlerModule sets it).
# Copy or mount your compiled handlers under /app (e.g. /app/handlers/index.js) so that an
# import of "keeper" or of this image's dependencies resolves from there. KeeperCluster runs
# it on Fargate with KEEPER_TABLE, KEEPER_PERIOD_MS and KEEPER_METRICS=emf set.
#
# Node.js 24, the active LTS (20 reached end of life in April 2026); the package itself
# supports Node.js 20 or newer (package.json "engines").

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would compile before the sources are here; the build step below does it.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
# Only the library and the CLI: the construct's Lambda bundles (npm run build) are not part of a worker.
RUN npx tsc -p tsconfig.build.json

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
# No root, and nothing to write: ECS runs the container with a read-only root filesystem.
USER node
# Run node directly (no npm, no shell) so that ECS's SIGTERM reaches the worker, which then
# hands its tasks over before it exits.
CMD ["node", "bin/keeper.js", "worker"]
