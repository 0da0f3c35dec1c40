# The syncworker image: one image for every role (migrate, worker, beat, api); the command
# picks the role (see docker-compose.yml and the Procfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SYNCWORKER_DATA_DIR=/var/lib/syncworker

WORKDIR /src

# Dependencies first, pinned by CI's constraints: with no packages copied yet this installs
# only them, so a code change rebuilds from the next step.
COPY pyproject.toml constraints.txt README.md ./
RUN pip install -c constraints.txt .

# The code (fakes ships too: the demo runs against it).
COPY models ./models
COPY scheduler ./scheduler
COPY worker ./worker
COPY fakes ./fakes
COPY api ./api
RUN pip install --no-deps .

# Never root. With PostgreSQL and Redis nothing is written to the data directory (beat keeps
# its schedule in memory); the embedded default keeps its SQLite files there, owner-only.
RUN useradd --system --uid 10001 --user-group --no-create-home syncworker \
    && install -d -m 0700 -o syncworker -g syncworker /var/lib/syncworker
USER syncworker
WORKDIR /var/lib/syncworker

# Task events stay off, as the README says (Flower turns them on in the workers it watches;
# SYNCWORKER_TASK_EVENTS=true keeps them on).
CMD ["celery", "-A", "worker", "worker", "-P", "threads", "--loglevel", "INFO"]
