# One image for both programs: `twist clusternet-hub` and `twist clusternet-agent`.
#   docker build -t clusternet .
#   docker run --rm clusternet clusternet-hub --help
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[speedups]"

FROM python:3.11-slim
RUN groupadd --system --gid 65532 clusternet \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --shell /usr/sbin/nologin clusternet
COPY --from=build /wheels /wheels
# Install, then write Twisted's plugin cache once so the read-only install never
# tries to at run time.
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
USER 65532:65532
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["twist"]
CMD ["--help"]
