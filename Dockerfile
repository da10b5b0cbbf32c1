# toolwire gateway image: slim Python, non-root, config mounted read-only at /etc/toolwire.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin toolwire \
    && mkdir -p /etc/toolwire /var/lib/toolwire \
    && chown toolwire /var/lib/toolwire

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
RUN pip install --no-cache-dir .

USER toolwire
ENV TOOLWIRE_CONFIG=/etc/toolwire/toolwire.yaml \
    TOOLWIRE_HOST=0.0.0.0 \
    TOOLWIRE_PORT=8000 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# The image has no curl: ask the liveness endpoint with Python itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
CMD ["toolwire", "serve"]
