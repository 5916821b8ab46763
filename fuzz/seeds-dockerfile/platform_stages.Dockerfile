ARG GO=golang:1.23
FROM --platform=$BUILDPLATFORM ${GO} AS build
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/root/.cache \
    # comments inside a continuation are dropped
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app ./...
FROM scratch
COPY --from=build /out/app /app
