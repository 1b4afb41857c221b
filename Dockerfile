# explo-shim: a static binary on a distroless, non-root base, for linux/amd64 and linux/arm64.
#
#   docker build \
#     --build-arg EXPLO_SHIM_COMMIT="$(git rev-parse --short HEAD)" \
#     --build-arg EXPLO_SHIM_SOURCE="$(git remote get-url origin)" -t explo-shim .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg EXPLO_SHIM_COMMIT="$(git rev-parse --short HEAD)" \
#     --build-arg EXPLO_SHIM_SOURCE="$(git remote get-url origin)" -t explo-shim .
#   docker run -p 8080:8080 -p 9901:9901 -e EXPLO_SHIM_UPSTREAM=https://api.explo.co explo-shim
#
# The binary is linked statically (glibc, crt-static) exactly as .ci/static-build does, so the
# final image needs no libc, no shell and no curl: the HEALTHCHECK is the binary itself.
#
# The addresses come from the image's config file (config/container.toml, 0.0.0.0:8080 and
# 0.0.0.0:9901), never from ENV: an environment variable beats the file, so one baked in here
# would override a mounted config's `listen` (a sidecar's 127.0.0.1:8080) without a word.

# The build stage runs on the build machine's own platform ($BUILDPLATFORM) and cross-compiles
# for the platform being built ($TARGETARCH, set by BuildKit/buildx): no emulation, so an arm64
# image builds at native speed on an amd64 machine and the other way round. BuildKit (buildx,
# and `docker build` since Docker 23) sets both; with TARGETARCH empty the build machine's own
# architecture is built.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
# Optional: the commit the binary reports in --version (read at compile time).
ARG EXPLO_SHIM_COMMIT
WORKDIR /src
# The Rust target, and for a foreign architecture Debian's cross gcc and glibc: the linker of
# the static glibc build, and the C compiler of ring's and jemalloc's C code (the cc crate reads
# CC_<target>). Kept in /cross.env for the build step; a layer of its own, so a source change
# does not install them again.
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && case "$arch" in \
      amd64) target=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu gcc=gcc-x86-64-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu gcc=gcc-aarch64-linux-gnu ;; \
      *) echo "explo-shim: no build for architecture '$arch' (amd64 and arm64 are supported)" >&2; exit 1 ;; \
    esac \
 && rustup target add "$target" \
 && echo "target=$target" > /cross.env \
 && if [ "$arch" != "$(dpkg --print-architecture)" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends "$gcc" "libc6-dev-$arch-cross" \
      && rm -rf /var/lib/apt/lists/* \
      && triple="$(echo "$target" | tr 'a-z-' 'A-Z_')" \
      && echo "export CARGO_TARGET_${triple}_LINKER=$gnu-gcc" >> /cross.env \
      && echo "export CC_$(echo "$target" | tr '-' '_')=$gnu-gcc" >> /cross.env \
      && echo "export AR_$(echo "$target" | tr '-' '_')=$gnu-ar" >> /cross.env; \
    fi
COPY Cargo.toml Cargo.lock ./
# jemalloc's compiled-in settings (return freed memory after a second); see docs/design/memory.md.
COPY .cargo ./.cargo
COPY src ./src
COPY config ./config
# Applies to the target only (with --target, build scripts and proc macros are built without it).
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN . /cross.env \
 && if [ -z "${EXPLO_SHIM_COMMIT:-}" ]; then unset EXPLO_SHIM_COMMIT; else export EXPLO_SHIM_COMMIT; fi \
 && cargo build --release --locked --target "$target" \
 && cp "target/$target/release/explo-shim" /explo-shim

FROM gcr.io/distroless/static-debian12:nonroot
# The image's OCI labels. The version is the crate's (Cargo.toml; tests/it/release.rs checks
# the two agree), the revision the commit the binary was built from, the source the repository
# the build names. A Dockerfile cannot run git, so the last two come only from build arguments:
#   --build-arg EXPLO_SHIM_COMMIT="$(git rev-parse --short HEAD)"
#   --build-arg EXPLO_SHIM_SOURCE="$(git remote get-url origin)"
# Without them both labels are empty strings and `--version` names no commit: a release build
# passes both (the commands at the top of this file do).
ARG EXPLO_SHIM_VERSION=0.2.0
ARG EXPLO_SHIM_COMMIT
ARG EXPLO_SHIM_SOURCE
LABEL org.opencontainers.image.title="explo-shim" \
      org.opencontainers.image.description="A migration proxy: legacy End User Group API calls translated to Explo's Customer API" \
      org.opencontainers.image.version="$EXPLO_SHIM_VERSION" \
      org.opencontainers.image.revision="$EXPLO_SHIM_COMMIT" \
      org.opencontainers.image.source="$EXPLO_SHIM_SOURCE" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=build /explo-shim /usr/local/bin/explo-shim
# The image's own config; a file mounted at the same path replaces it whole.
COPY config/container.toml /etc/explo-shim/explo-shim.toml
ENV EXPLO_SHIM_CONFIG=/etc/explo-shim/explo-shim.toml
# distroless's nonroot user, by number: Kubernetes' runAsNonRoot can only verify a numeric
# user, and refuses a named one unless the pod also sets runAsUser.
USER 65532:65532
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/explo-shim", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/explo-shim"]
