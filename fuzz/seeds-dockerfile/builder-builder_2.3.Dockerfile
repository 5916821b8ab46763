# CI builder image for the release-2.3 branch: the tools that branch builds with.
ARG BASE_IMAGE=docker.io/library/alpine:3.16
FROM ${BASE_IMAGE}
ENV BUILDER_BRANCH=release-2.3
RUN mkdir -p /etc/builder \
 && echo "release-2.3 $(uname -m)" > /etc/builder/release
