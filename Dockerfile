# mammogan, CPU image (burn's pure-Rust flex backend): a stripped binary on distroless cc, non-root.
#
#   scripts/build-image                     # what CI runs: reproducible (buildah --timestamp), works offline
#   docker build -t mammogan:cpu .          # what a user with Docker Hub and gcr.io access may run
#   docker run --rm mammogan:cpu quickstart
#
# Both bases are build arguments so that a machine that cannot pull them (CI here) passes bases it made
# itself (scripts/container-bases); every stage below is the same whichever bases are used.
# Digests: taken from public Dockerfiles that pin these tags (several agree); not re-checked against the
# registries from here, which cannot reach them. `docker buildx imagetools inspect TAG` updates them.
ARG BUILD_BASE=docker.io/library/rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

# ---- recipe: the workspace's manifests and stub targets only. Its output changes only when a Cargo.toml,
# Cargo.lock or build script changes, so the dependency layer below survives any edit of the code.
FROM ${BUILD_BASE} AS recipe
WORKDIR /src
COPY . .
RUN set -eu; \
    find crates -type f \( -path '*/src/lib.rs' -o -path '*/src/main.rs' -o -path '*/src/bin/*.rs' \) > /tmp/targets; \
    find . -type f ! -name Cargo.toml ! -name Cargo.lock ! -name build.rs -delete; \
    while read -r f; do \
      mkdir -p "$(dirname "$f")"; \
      case "$f" in */lib.rs) : > "$f" ;; *) echo 'fn main() {}' > "$f" ;; esac; \
    done < /tmp/targets; \
    find . -depth -type d -empty -delete; \
    find . -exec touch -h -d @0 {} +

# ---- build: dependencies first (cached by the recipe), then the project's crates.
FROM ${BUILD_BASE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
COPY --from=recipe /src ./
RUN cargo fetch --locked
# The same command (profile, features, no extra RUSTFLAGS) as a native `cargo build --release --locked`,
# so the container computes exactly what the host binary computes (tests/container checks the weights).
RUN cargo build --release --locked --offline -p mammogan
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# The stubs were built after the real sources' mtimes: touch them so cargo rebuilds the project's crates.
RUN set -eu; \
    find crates -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --offline -p mammogan; \
    mkdir -p /out/work; \
    strip --strip-debug -o /out/mammogan target/release/mammogan; \
    /out/mammogan --version
# The image's provenance as a file, which the runtime stage copies first: a new revision then re-creates
# every later layer. (buildah --layers keys LABEL and ENV steps on their text, not on the values of the
# build arguments in them; a RUN step is keyed on those values.) After the compile, so it stays cached.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG IMAGE_NAME=mammogan:cpu
ARG SOURCE=https://github.com/mammogan/mammogan
RUN printf 'name=%s\nversion=%s\nrevision=%s\ncreated=%s\nsource=%s\n' \
      "$IMAGE_NAME" "$VERSION" "$REVISION" "$CREATED" "$SOURCE" > /out/provenance

# ---- runtime: the binary and libc/libgcc_s (all it links: `ldd` shows libc, libm, libgcc_s).
FROM ${RUNTIME_BASE}
COPY --from=build /out/provenance /usr/local/share/mammogan/provenance
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/mammogan/mammogan
ARG IMAGE_NAME=mammogan:cpu
LABEL org.opencontainers.image.title="mammogan" \
      org.opencontainers.image.description="Trains GANs that highlight the features of malignancy in mammograms (CPU, flex backend)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# `mammogan env` and every run manifest report the image from these.
ENV MAMMOGAN_IMAGE_NAME="${IMAGE_NAME}" \
    MAMMOGAN_IMAGE_VERSION="${VERSION}" \
    MAMMOGAN_IMAGE_REVISION="${REVISION}" \
    HOME=/work \
    PATH=/usr/local/bin:/usr/bin:/bin
COPY --from=build --chown=65532:65532 /out/work /work
COPY --from=build /out/mammogan /usr/local/bin/mammogan
USER 65532:65532
WORKDIR /work
ENTRYPOINT ["mammogan"]
CMD ["--help"]
