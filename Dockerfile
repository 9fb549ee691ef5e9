# Soho Partner Portal: the browser portal built with Node, the server with Rust, and a slim
# runtime that runs as a non-root user. Configure it with the settings of .env.example
# (a real deployment sets DATABASE_URL, JWT_SECRET, the SOHO_* settings and SMTP_URL).

FROM node:22-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM rust:1-bookworm AS server
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p soho-portal -p soho-crm-sim --bins

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /app portal
COPY --from=server /src/target/release/soho-portal /src/target/release/soho-crm-sim /usr/local/bin/
COPY --from=web /src/web/dist /app/web
USER portal
WORKDIR /app
ENV WEB_DIR=/app/web \
    LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s CMD ["soho-portal", "healthcheck"]
CMD ["soho-portal", "serve"]
