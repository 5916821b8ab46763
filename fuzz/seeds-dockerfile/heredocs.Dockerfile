# syntax=docker/dockerfile:1.7
FROM alpine:3.20 AS build
RUN <<EOF
set -e
# a heredoc body is not Dockerfile: this line is no instruction
FROM runtime:1
EOF
COPY <<-"EOT" /etc/motd
	ARG NOT_AN_ARG
	EOT
FROM registry.example.com/team/base:1
COPY --from=build /etc/motd /etc/motd
