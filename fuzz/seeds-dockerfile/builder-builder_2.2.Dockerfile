# CI builder image for the release-2.2 branch: the tools that branch builds with.
ARG BASE_IMAGE=docker.io/library/alpine:3.16
FROM ${BASE_IMAGE}
ENV BUILDER_BRANCH=release-2.2
RUN mkdir -p /etc/builder \
 && echo "release-2.2 $(uname -m)" > /etc/builder/release
