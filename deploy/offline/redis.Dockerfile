# Stand-in for redis:7.2-bookworm, from Debian's redis-server (7.0): redis-server and
# redis-cli on the PATH, running as the redis user in /data.
ARG BASE=strata-offline/debian:bookworm
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
