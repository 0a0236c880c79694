# Tripod in a small image: built with the Rust toolchain, run from debian-slim as a non-root
# user, data in the /data volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tripod \
    && cp target/release/tripod /usr/local/bin/tripod

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tripod \
    && mkdir -p /data && chown tripod /data
COPY --from=build /usr/local/bin/tripod /usr/local/bin/tripod
USER 10001
VOLUME /data
ENV TRIPOD_DATA_DIR=/data
EXPOSE 3100 9090 3200 4317 4318
ENTRYPOINT ["/usr/local/bin/tripod"]
