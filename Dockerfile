# explo-shim: a static binary on a distroless, non-root base.
#
#   docker build -t explo-shim .
#   docker run -p 8080:8080 -p 9901:9901 -e EXPLO_SHIM_UPSTREAM=https://api.explo.co explo-shim
#
# The binary is linked statically (glibc, crt-static) exactly as .ci/static-build does, so the
# final image needs no libc, no shell and no curl: the HEALTHCHECK is the binary itself.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# jemalloc's compiled-in settings (return freed memory after a second); see the README's "Memory".
COPY .cargo ./.cargo
COPY src ./src
COPY config ./config
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/explo-shim /explo-shim

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /explo-shim /usr/local/bin/explo-shim
COPY config/explo-shim.toml /etc/explo-shim/explo-shim.toml
ENV EXPLO_SHIM_CONFIG=/etc/explo-shim/explo-shim.toml \
    EXPLO_SHIM_LISTEN=0.0.0.0:8080 \
    EXPLO_SHIM_ADMIN=0.0.0.0:9901 \
    EXPLO_SHIM_LOG_FORMAT=json
USER nonroot:nonroot
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/explo-shim", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/explo-shim"]
