# escape=`
ARG BASE=registry.example.com/team/base:1 EXTRA
FROM ${BASE} `
  AS final
RUN echo `
  done
