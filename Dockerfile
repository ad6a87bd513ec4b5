# syntax=docker/dockerfile:1
# Multi-stage build: a static opsrunner binary on a distroless base, run as non-root.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/opsrunner/opsrunner/agent.Version=${VERSION}" -o /out/opsrunner ./cmd/opsrunner

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/opsrunner /usr/local/bin/opsrunner
COPY --from=build /src/samples /samples
USER nonroot:nonroot
WORKDIR /home/nonroot
# The embedded broker listens inside the container only: a broker reachable
# from elsewhere needs users. To publish it, give them and bind it to all
# addresses, e.g.
#   -e OPSRUNNER_EMBEDDED_BROKER_ADDR=0.0.0.0:61613
#   -e OPSRUNNER_BROKER_USERS='[{login: app, passcode: "$2a$10$...", read: ["*"], write: ["*"]}]'
# (or mount a users file and set OPSRUNNER_BROKER_USERS_FILE, re-read on change).
# The API listens on all addresses: give it tokens and, beyond a trusted
# network, TLS, e.g.
#   -e OPSRUNNER_TOKENS=<admin token> -e OPSRUNNER_METRICS_TOKEN=<token>
#   -e OPSRUNNER_TLS_CERT_FILE=/tls/cert.pem -e OPSRUNNER_TLS_KEY_FILE=/tls/key.pem
ENV OPSRUNNER_HTTP_ADDR=0.0.0.0:8080 \
    OPSRUNNER_EMBEDDED_BROKER_ADDR=127.0.0.1:61613 \
    OPSRUNNER_DATA_DIR=/home/nonroot/data
EXPOSE 8080 61613
ENTRYPOINT ["/usr/local/bin/opsrunner"]
CMD ["serve"]
