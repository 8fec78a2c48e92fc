# One image for both roles of the distributed demo: the command picks the role
# (`pcq produce` / `pcq consume`, or `python -m pcq.producer` / `python -m pcq.consumer`).
#
#   docker build -t pcq .
#   docker compose up --build --scale consumer=3 --exit-code-from producer
#
# No `# syntax=` line on purpose: it would make BuildKit fetch a frontend image,
# and the classic builder must work too.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/pcq \
    PATH=/opt/pcq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# A fixed, unprivileged uid/gid, so compose's `user:` and file ownership agree.
RUN groupadd --gid 10001 pcq \
 && useradd --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pcq \
 && python -m venv "$VIRTUAL_ENV"

WORKDIR /src

# Dependencies first, read from pyproject.toml alone: this layer is rebuilt only
# when the dependency list changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(t['project']['dependencies'] + t['build-system']['requires']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Then the package itself, without touching the dependencies again (and without
# build isolation, so a source edit needs no network).
# (README.md is the package's long description: setuptools needs it to build.)
COPY pyproject.toml README.md* ./
COPY core ./core
COPY producer ./producer
COPY consumer ./consumer
RUN pip install --no-deps --no-build-isolation . \
 && rm -rf /src/build /src/*.egg-info

# Run from an empty directory, so `python -m pcq.producer` imports the installed
# package, never a stray copy of the sources.
WORKDIR /app
USER 10001:10001

# Default role: a consumer that serves until SIGTERM. Exec form, so the signal
# reaches Python (compose adds `init: true` on top to reap children).
CMD ["pcq", "consume"]
