# Stand-in for gcr.io/distroless/cc-debian12:nonroot: Debian 12's glibc, libgcc_s and CA
# certificates, the users root and nonroot (65532), /tmp; no shell, no package manager.
ARG BASE=strata-offline/debian:bookworm
FROM ${BASE} AS files
RUN mkdir -p /out/etc/ssl/certs /out/lib/x86_64-linux-gnu /out/lib64 /out/tmp /out/home/nonroot \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates \
 && cp -a /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && for pkg in libc6 libgcc-s1; do \
      dpkg -L "$pkg" | while read -r f; do \
        case "$f" in /lib/x86_64-linux-gnu/*.so*|/lib64/*|/usr/lib/x86_64-linux-gnu/*.so*) \
          [ -e "$f" ] && { mkdir -p "/out$(dirname "$f")"; cp -a "$f" "/out$f"; } ;; esac; \
      done; \
    done \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group \
 && chmod 1777 /out/tmp && chown 65532:65532 /out/home/nonroot

FROM scratch
COPY --from=files /out/ /
USER 65532:65532
WORKDIR /home/nonroot
