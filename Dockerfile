# switchyard container image.
#
#     docker build -t switchyard:dev .
#     docker run --rm -p 18000:18000 -p 19000:19000 switchyard:dev
#     docker run --rm -v "$PWD/examples:/etc/switchyard:ro" -p 18000:18000 -p 19000:19000 switchyard:dev
#
# The second form mounts a directory, not the single file: switchyard watches the
# file's directory, and a directory mount sees every kind of save (a single-file bind
# mount keeps pointing at the old inode once an editor renames a new file over it).
# examples/kubernetes/ runs this image as several replicas behind a Service.

# Any Rust >= 1.89 (Cargo.toml's rust-version; the newest MSRV among the locked
# dependencies is 1.89 too). Build and runtime are both Debian bookworm, so the
# binary's glibc matches.
ARG RUST_VERSION=1.94

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# The slim image has a C compiler but no `make`, which building jemalloc (the default
# `jemalloc` feature) needs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# build.rs runs `cargo metadata --offline`, which needs every locked package already
# downloaded: hence `cargo fetch --locked` (all targets and platforms) before the build.
# The cache mounts (BuildKit, the default builder since Docker 23; Podman/Buildah too)
# keep the downloaded crates and the compiled dependencies from one build to the next,
# so a change to src/ recompiles switchyard alone. The target directory lives only in
# the cache, so the binary is copied out in the same step. COPY keeps the context's
# modification times, which can be older than the cached build: touching the crate
# roots and build inputs makes Cargo rebuild switchyard itself every time, never reuse a
# stale one.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    touch build.rs Cargo.lock \
 && find src -name '*.rs' -exec touch {} + \
 && cargo fetch --locked \
 && cargo build --release --locked --offline --bin switchyard \
 && install -D -m 0755 target/release/switchyard /out/switchyard

FROM debian:bookworm-slim AS runtime

# A numeric, non-root user: Kubernetes' runAsNonRoot can only verify a numeric UID.
RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin switchyard

COPY --from=build /out/switchyard /usr/local/bin/switchyard
# A default state file (the demo's, everything on 127.0.0.1) so that the image starts on
# its own; mount your own directory over /etc/switchyard (Kubernetes: a ConfigMap).
COPY examples/state.yaml /etc/switchyard/state.yaml

USER 10001:10001
# 18000: xDS (gRPC: ADS, CSDS, health, reflection). 19000: admin HTTP
# (/healthz, /readyz, /status, /metrics).
EXPOSE 18000 19000
# switchyard handles SIGTERM itself (stops accepting, ends the ADS streams, exits), so it
# can run as PID 1 without an init.
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
# --insecure: plaintext xDS on the container's network (a non-loopback plaintext address is
# refused without it). In production, mount certificates and pass --tls-cert, --tls-key and
# --client-ca instead (README, "TLS and mutual TLS").
CMD ["serve", "--state", "/etc/switchyard/state.yaml", "--xds-addr", "0.0.0.0:18000", "--admin-addr", "0.0.0.0:19000", "--log-format", "json", "--insecure"]
