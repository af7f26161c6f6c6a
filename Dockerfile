# ephemesh: the signaling server + web client (`ephemesh serve`), and the keeper (`ephemesh keep`).
# The wheel carries the web client (package ephemesh_web), so nothing depends on the working directory.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY peer ./peer
COPY signaling ./signaling
COPY web ./web
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[redis]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home ephemesh
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'ephemesh[redis]' && rm -rf /wheels
USER ephemesh
WORKDIR /data
ENV EPHEMESH_HOME=/data
# 8080/tcp: HTTP + WebSocket (behind the TLS proxy); 8080/udp: the embedded STUN responder
EXPOSE 8080/tcp 8080/udp
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["ephemesh", "serve", "--host", "0.0.0.0", "--port", "8080", "--no-invite", "--metrics", "off"]
