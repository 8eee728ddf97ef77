# inferguard container image: a release build in a Rust image, copied alone into a distroless
# base (glibc, CA certificates, no shell, no package manager) that runs as a non-root user.
#   docker build -t inferguard:dev .
#   docker run --rm -v $PWD/examples:/etc/inferguard inferguard:dev policy check /etc/inferguard/policy.yaml

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Plain RUN (no BuildKit-only cache mounts), so docker's legacy builder, podman and kaniko all
# build it.
RUN cargo build --release --locked --package inferguard --bin inferguard \
    && install -D -m 0755 target/release/inferguard /out/inferguard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/inferguard /usr/local/bin/inferguard
# The distroless `nonroot` user; Kubernetes manifests also set runAsNonRoot/runAsUser 65532.
USER 65532:65532
# State (SQLite, audit trail) goes to a volume here; config is mounted at /etc/inferguard.
WORKDIR /var/lib/inferguard
EXPOSE 9191 8181 9192
ENTRYPOINT ["/usr/local/bin/inferguard"]
CMD ["serve", "--config", "/etc/inferguard/inferguard.yaml"]
