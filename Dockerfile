# syntax=docker/dockerfile:1
# Build a static paymentd binary, then run it as a non-root user on a
# minimal base. Configuration comes by mount (/etc/paymentd/config.yaml)
# and secrets from the environment.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/paymentd ./cmd/paymentd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/paymentd /usr/local/bin/paymentd
COPY config.yaml /etc/paymentd/config.yaml
USER nonroot:nonroot
WORKDIR /home/nonroot
# 8080 is the public API; 9090 the admin listener (/metrics, /healthz,
# /readyz with problem details), reachable by a scraper on the container
# network: publish only 8080 to the internet.
ENV PAYMENTD_HTTP_ADDR=0.0.0.0:8080 \
    PAYMENTD_ADMIN_ADDR=0.0.0.0:9090 \
    PAYMENTD_LOG_FORMAT=json
EXPOSE 8080 9090
# distroless has no shell or curl: the binary checks its own /healthz, on
# the admin listener, which every role serves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/paymentd", "healthcheck", "--url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/paymentd"]
CMD ["serve", "--config", "/etc/paymentd/config.yaml"]
