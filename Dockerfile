# ztfbroker in a container: the static binary on a distroless base, run as a non-root user,
# with the data directory as a volume. From the repository root (its parent must hold nothing
# the build needs):
#
#   docker build -t ztfbroker .
#   docker run -d --name ztfbroker -p 9092:9092 -p 8080:8080 -v ztfbroker-data:/var/lib/ztfbroker ztfbroker
#   docker run ... -v /etc/ztfbroker:/etc/ztfbroker:ro ztfbroker serve --config /etc/ztfbroker/production.yaml
#
# Kafka clients outside the container need the advertised address: add
# `--advertise HOST:9092` (the host's name) to the serve arguments.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: one static file, no libc in the image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ztfbroker ./cmd/ztfbroker && mkdir /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ztfbroker /usr/local/bin/ztfbroker
COPY configs/ /etc/ztfbroker/examples/
# An empty data directory owned by the user below; a new volume mounted there takes its owner.
COPY --from=build --chown=65532:65532 /out/data /var/lib/ztfbroker
# distroless' nonroot user (65532); the volume's first mount copies this owner.
USER 65532:65532
WORKDIR /var/lib/ztfbroker
VOLUME ["/var/lib/ztfbroker"]
# Kafka (plaintext), Kafka (SASL_SSL in production.yaml), HTTP, HTTPS in production.yaml.
EXPOSE 9092 9093 8080 8443
ENTRYPOINT ["/usr/local/bin/ztfbroker"]
# The admin listener (pprof) stays on the container's loopback.
CMD ["serve", "--data-dir", "/var/lib/ztfbroker", "--listen", "0.0.0.0:9092", "--http", "0.0.0.0:8080"]
