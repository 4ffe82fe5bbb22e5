# Stand-in for haproxy:3.0-alpine, from Debian's haproxy (2.6, which checks the compose
# stack's configuration the same: scripts/compose-validate): the configuration at
# /usr/local/etc/haproxy/haproxy.cfg, wget for the healthcheck, the haproxy user.
ARG BASE=strata-offline/debian:bookworm
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
