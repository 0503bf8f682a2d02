# picoclaw gateway image: build with the pinned toolchain, run as non-root on distroless.
#   docker build -t picoclaw .
#   docker run -d -p 127.0.0.1:18790:18790 -v picoclaw:/data \
#     -e PICOCLAW_GATEWAY_API_KEY=<long random token> -e OPENAI_API_KEY=sk-... picoclaw
# Inside the container the gateway binds 0.0.0.0, so it refuses to start without an API key.
# See docs/deployment.md (this file was written on machines without Docker: see there what was
# and was not built).

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
# The release build with every channel (Telegram, Discord, Slack), MCP, PostgreSQL, I2C/SPI and
# the keychain: the `full` feature of both binaries, the set CI compiles and tests. Relative
# relocations packed (DT_RELR: 1.2 MiB less per binary; binutils >= 2.38 links it and
# glibc >= 2.36 loads it, as bookworm and distroless debian12 have).
ENV RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs"
RUN cargo build --release --locked -p picoclaw-cli -p picoclaw-gateway-bin \
      --features picoclaw-cli/full,picoclaw-gateway-bin/full \
 && install -m 0755 target/release/picoclaw target/release/picoclaw-gateway /usr/local/bin/

# glibc, CA certificates and the tz database (cron time zones), no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/picoclaw /usr/local/bin/picoclaw-gateway /usr/local/bin/
ENV PICOCLAW_HOME=/data \
    PICOCLAW_GATEWAY_HOST=0.0.0.0 \
    PICOCLAW_GATEWAY_PORT=18790
VOLUME ["/data"]
EXPOSE 18790
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/picoclaw-gateway"]
