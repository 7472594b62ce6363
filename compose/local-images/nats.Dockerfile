# Stand-in for nats:2.10-alpine (README.md): Debian's nats-server, wget for the health check.
ARG BASE_IMAGE=netledger-local/debian:bookworm
FROM ${BASE_IMAGE}
EXPOSE 4222 8222
ENTRYPOINT ["/usr/sbin/nats-server"]
