# The sandbox's example web app (built by `kamalpy sandbox up` with the legacy builder).
ARG BASE
FROM ${BASE}
ARG VERSION=v1
ARG HEALTHY=1
ARG SERVING=1
ENV APP_VERSION=${VERSION} APP_HEALTHY=${HEALTHY} APP_SERVING=${SERVING} PORT=80
COPY app-start.sh /usr/local/bin/app-start
EXPOSE 80
CMD ["/bin/sh", "/usr/local/bin/app-start"]
