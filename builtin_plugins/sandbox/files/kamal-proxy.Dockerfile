# The sandbox's kamal-proxy STAND-IN (built by `kamalpy sandbox up`): not kamal-proxy, it only records
# each call of its `kamal-proxy` executable and answers success. The real image cannot be pulled here.
ARG BASE
FROM ${BASE}
LABEL org.opencontainers.image.title=kamal-proxy
COPY kamal-proxy-standin.sh /usr/local/bin/kamal-proxy
RUN chmod 0755 /usr/local/bin/kamal-proxy && mkdir -p /home/kamal-proxy/.config/kamal-proxy
EXPOSE 80 443
CMD ["kamal-proxy", "run"]
