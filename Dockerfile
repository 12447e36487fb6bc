# syntax=docker/dockerfile:1.7
#
# fleetwave's container image: one static-as-possible binary on distroless, run as UID 65532.
#
#   docker build -t fleetwave .
#   docker run --rm --read-only fleetwave --version
#
# Stages:
#   build     compiles fleetwave from this checkout (OpenSSL and zlib built from source and
#             linked statically: `--features vendored`), so the binary needs only glibc.
#   runtime   the default image: distroless/cc (glibc, libgcc, CA certificates, /etc/passwd
#             with `nonroot` = 65532, no shell, no package manager), the binary, and an empty
#             cache directory owned by 65532. Git is not needed: libgit2 is linked in.
#   prebuilt  used by .github/workflows/release.yml: the static musl binaries the release
#             built and checksummed (dist/linux/amd64/fleetwave, dist/linux/arm64/fleetwave),
#             so the multi-arch image holds the very binaries of the release and no Rust is
#             compiled under emulation.
#
# The root filesystem may be read-only (`docker run --read-only`, Kubernetes
# readOnlyRootFilesystem): fleetwave writes only to its cache directory
# (XDG_CACHE_HOME=/var/cache, i.e. /var/cache/fleetwave/…, or --cache) and to /tmp; mount
# volumes there (deploy/ and the Helm chart use emptyDirs).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# The cache directory, owned by 65532 (distroless has no shell to make it). Runs on the build
# platform: no emulation for a mkdir.
FROM --platform=$BUILDPLATFORM docker.io/library/busybox:1.37 AS dirs
RUN mkdir -p /out/var/cache/fleetwave

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --release --features vendored --bin fleetwave \
 && install -D -m 0755 target/release/fleetwave /out/usr/local/bin/fleetwave

FROM gcr.io/distroless/static-debian12:nonroot AS prebuilt
ARG TARGETPLATFORM
COPY --chmod=0755 dist/${TARGETPLATFORM}/fleetwave /usr/local/bin/fleetwave
COPY --from=dirs --chown=65532:65532 /out/var/cache/fleetwave /var/cache/fleetwave
ENV XDG_CACHE_HOME=/var/cache HOME=/home/nonroot
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/cache/fleetwave"]
ENTRYPOINT ["/usr/local/bin/fleetwave"]
CMD ["--help"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="fleetwave" \
      org.opencontainers.image.description="Upgrade fleets of Kubernetes clusters wave by wave through their GitOps repository" \
      org.opencontainers.image.source="https://github.com/fleetwave/fleetwave" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/usr/local/bin/fleetwave /usr/local/bin/fleetwave
COPY --from=dirs --chown=65532:65532 /out/var/cache/fleetwave /var/cache/fleetwave
ENV XDG_CACHE_HOME=/var/cache HOME=/home/nonroot
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/cache/fleetwave"]
ENTRYPOINT ["/usr/local/bin/fleetwave"]
CMD ["--help"]
