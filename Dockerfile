# syntax=docker/dockerfile:1
# hoist's container image: a static (musl) binary, busybox for a shell, CA
# certificates, a non-root user. Usable as a GitLab CI job image (the docker
# executor runs the job's script with /bin/sh) and by Buildkite/Jenkins agents
# with Docker:
#
#   docker build -t hoist .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/hoist:0.1.0 --push .
#   docker run --rm -v "$PWD:/work" -w /work hoist hoist push image.tar --repository team/app
#
# The final stage takes one root file system, laid out by scripts/image-rootfs,
# from the `build` stage. A build without a Rust base image hands it in
# instead (this is how the tests build the final stage):
#
#   scripts/image-rootfs DIR/rootfs HOIST BUSYBOX CA_BUNDLE
#   buildah bud --build-context build=DIR -t hoist .

ARG RUST_VERSION=1.95
ARG ALPINE_VERSION=3.22

FROM docker.io/library/rust:${RUST_VERSION}-alpine${ALPINE_VERSION} AS build
# Alpine's packages follow the pinned Alpine release; pinning each package's
# exact version would break the build at every security update.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev gcc busybox-static ca-certificates
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY scripts/image-rootfs ./scripts/image-rootfs
# Alpine's Rust targets musl, which links statically: one self-contained binary.
RUN cargo build --release --locked \
 && sh scripts/image-rootfs /rootfs target/release/hoist /bin/busybox.static /etc/ssl/certs/ca-certificates.crt \
 && /rootfs/usr/local/bin/hoist --version

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/bin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/hoist
USER 10001:10001
WORKDIR /home/hoist
# No ENTRYPOINT: CI systems run their own shell commands in the image.
CMD ["hoist", "--help"]
