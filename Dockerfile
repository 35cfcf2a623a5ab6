# The orderflow image that docker-compose.yml builds: installed once, at build time, run as a user.
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY streams streams
COPY tables tables
COPY schemas schemas
RUN pip install --no-cache-dir . && rm -rf /build \
    && useradd --create-home --uid 10001 orderflow \
    && mkdir -p /var/lib/orderflow && chown orderflow /var/lib/orderflow

USER orderflow
WORKDIR /home/orderflow
# State inside the container: a replica restores its tables from their changelogs. The API listens on
# every address (which requires ORDERFLOW_API_TOKEN) and is advertised to the other workers at the
# container's own address unless ORDERFLOW_WEB_ADVERTISE says otherwise.
ENV ORDERFLOW_DATA_DIR=/var/lib/orderflow ORDERFLOW_WEB_BIND=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["/bin/sh", "-c", "ORDERFLOW_WEB_ADVERTISE=\"${ORDERFLOW_WEB_ADVERTISE:-$(hostname -i | cut -d' ' -f1)}\" exec orderflow \"$@\"", "orderflow"]
CMD ["run"]
