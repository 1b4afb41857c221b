# explo-shim: a static binary on a distroless, non-root base, for linux/amd64 and linux/arm64.
#
#   docker build -t explo-shim .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg EXPLO_SHIM_COMMIT="$(git rev-parse --short HEAD)" -t explo-shim .
#   docker run -p 8080:8080 -p 9901:9901 -e EXPLO_SHIM_UPSTREAM=https://api.explo.co explo-shim
#
# The binary is linked statically (glibc, crt-static) exactly as .ci/static-build does, so the
# final image needs no libc, no shell and no curl: the HEALTHCHECK is the binary itself.
#
# The addresses come from the image's config file (config/container.toml, 0.0.0.0:8080 and
# 0.0.0.0:9901), never from ENV: an environment variable beats the file, so one baked in here
# would override a mounted config's `listen` (a sidecar's 127.0.0.1:8080) without a word.

FROM rust:1.95-bookworm AS build
# Set by BuildKit/buildx to the platform being built (amd64, arm64); each platform builds
# natively for its own target. Without BuildKit it is empty and the build machine's own
# architecture is used.
ARG TARGETARCH
# Optional: the commit the binary reports in --version (read at compile time).
ARG EXPLO_SHIM_COMMIT
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# jemalloc's compiled-in settings (return freed memory after a second); see docs/design/memory.md.
COPY .cargo ./.cargo
COPY src ./src
COPY config ./config
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && case "$arch" in \
      amd64) target=x86_64-unknown-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu ;; \
      *) echo "explo-shim: no build for architecture '$arch' (amd64 and arm64 are supported)" >&2; exit 1 ;; \
    esac \
 && if [ -z "${EXPLO_SHIM_COMMIT:-}" ]; then unset EXPLO_SHIM_COMMIT; else export EXPLO_SHIM_COMMIT; fi \
 && cargo build --release --locked --target "$target" \
 && cp "target/$target/release/explo-shim" /explo-shim

FROM gcr.io/distroless/static-debian12:nonroot
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
