# Stand-in for postgres:16-bookworm (README.md): Debian's PostgreSQL 15 with the entrypoint
# subset the compose file uses.
ARG BASE_IMAGE=netledger-local/debian:bookworm
FROM ${BASE_IMAGE}
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
