ARG BASE_IMAGE=registry.access.redhat.com/ubi8/ubi:8.8
FROM ${BASE_IMAGE}
ARG ISTIO_BRANCH
ARG BAZEL_VERSION
ARG TARGETARCH
RUN dnf install -y git make gcc-c++ python3 && dnf clean all
RUN curl -fsSLo /usr/local/bin/bazel "https://github.com/bazelbuild/bazel/releases/download/${BAZEL_VERSION}/bazel-${BAZEL_VERSION}-linux-${TARGETARCH}" \
 && chmod +x /usr/local/bin/bazel
