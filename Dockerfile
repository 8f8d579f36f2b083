# The app's image: web (gunicorn), worker, scheduler and migrate all run from it, each with
# its own command (compose.yaml). docs/operators/install.md, "Containers", says what was and
# was not run with it; tests/integration/test_deploy_containers.py checks its structure.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/sacco

# The pinned runtime dependencies only (requirements-dev.txt's test and lint tools stay
# out); every one has a manylinux wheel, so no compiler is installed.
COPY requirements.txt .
RUN python -m venv /opt/sacco/.venv \
    && /opt/sacco/.venv/bin/pip install -r requirements.txt

# An unprivileged user owning nothing but the data directory (KYC documents).
RUN groupadd --system sacco \
    && useradd --system --gid sacco --home-dir /var/lib/sacco --no-create-home sacco \
    && mkdir -p /var/lib/sacco/documents \
    && chown -R sacco:sacco /var/lib/sacco

# The code, owned by root and so read-only for the app (.dockerignore keeps out the
# tests, docs, virtualenvs and any env file).
COPY . .

ENV PATH=/opt/sacco/.venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8000 \
    DOCUMENT_DIR=/var/lib/sacco/documents

USER sacco
EXPOSE 8000

# Ready = the database and Redis answer (GET /readyz is 503 otherwise). The image has no
# curl: Python's own client. worker, scheduler and migrate serve no HTTP and turn it off.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
