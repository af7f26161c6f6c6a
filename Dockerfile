FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY peer ./peer
COPY signaling ./signaling
COPY web ./web
RUN pip install --no-cache-dir '.[redis]'
EXPOSE 8080
CMD ["python", "-m", "signaling", "--host", "0.0.0.0", "--port", "8080"]
