# Stand-in for rabbitmq:3.13-management, from Debian's rabbitmq-server (3.10: quorum
# queues with x-delivery-limit and streams are there since 3.9) with the management
# plugin enabled; reads /etc/rabbitmq/conf.d/ like the official image; data in
# /var/lib/rabbitmq; runs as the rabbitmq user.
ARG BASE=strata-offline/debian:bookworm
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_stream >/dev/null \
 && mkdir -p /etc/rabbitmq/conf.d \
 && printf 'loopback_users.guest = true\nlisteners.tcp.default = 5672\nmanagement.tcp.port = 15672\n' \
      >/etc/rabbitmq/conf.d/10-defaults.conf \
 && chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
ENV RABBITMQ_CONFIG_FILES=/etc/rabbitmq/conf.d RABBITMQ_LOGS=- HOME=/var/lib/rabbitmq
USER rabbitmq
EXPOSE 5672 15672
CMD ["rabbitmq-server"]
