# The watershed image: one static binary with every subcommand.
# Build: docker build -t watershed .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/watershed ./cmd/watershed

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/watershed /usr/local/bin/watershed
# Tables, views and local stores live here; mount a volume to keep them.
WORKDIR /data
ENV WATERSHED_DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/watershed"]
