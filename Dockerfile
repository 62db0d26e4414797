# One image for web (gunicorn), worker and beat (Celery) and the one-shot migrate service.
# See docker-compose.yml.

# --- build: install the requirements into a virtualenv (compilers only here, for any sdist) ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

# --- browser libraries from npm (Chart.js), as package-lock.json pins them; only dist/ is kept ---
FROM node:20-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
# --omit=dev: axe-core (a devDependency) is only for the accessibility tests
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

# --- runtime ---
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    DJANGO_SETTINGS_MODULE=config.settings \
    WEB_CONCURRENCY=3
RUN useradd --create-home --uid 1000 computeflow
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=computeflow:computeflow . /app
# STATICFILES_DIRS reads node_modules/chart.js/dist (config/settings.py).
COPY --from=frontend --chown=computeflow:computeflow /src/node_modules/chart.js/dist /app/node_modules/chart.js/dist
# Static files are collected at build time into STATIC_ROOT (.local/staticfiles) and served by
# WhiteNoise; collectstatic imports the settings but connects to nothing.
# The Chinese catalog's .mo files are compiled here (config/i18n.py, Babel); they are not committed.
RUN python -m config.i18n \
    && python manage.py collectstatic --noinput \
    && chown -R computeflow:computeflow /app/.local
USER computeflow
EXPOSE 8000
# WEB_CONCURRENCY sets gunicorn's worker count.
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
