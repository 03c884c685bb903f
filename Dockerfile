# tpo in a container: a static binary on a distroless base, run as non-root.
#
#   docker build -t tpo:dev --build-arg VERSION=$(git describe --always) .
#   docker run --rm tpo:dev version
#
# The image's entrypoint is tpo itself: give it a command and flags
# (serve, run, ...). Its working directory, /data, is writable by the
# image's user (uid 65532), for a SQLite store or --out files; with a
# PostgreSQL store (--store postgres://...) nothing is written there.

# Build: the Go version of go.mod (deploy_test.go checks that they agree).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Pure Go (the SQLite driver included): CGO off gives a static binary.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tpo ./cmd/tpo \
    && mkdir -p /out/data

# Run: no shell, no package manager; CA certificates for https:// model
# servers and PostgreSQL over TLS; user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tpo /usr/local/bin/tpo
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tpo"]
CMD ["--help"]
