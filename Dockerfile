# yurt-iot: one image for every subcommand (`docker run IMAGE <subcommand> ...`).
# Stage 1 builds wheels for the package and its dependencies; stage 2 installs them without a compiler.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY yurt_iot ./yurt_iot
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/yurt-iot yurt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels yurt-iot && rm -rf /wheels
USER 10001
WORKDIR /var/lib/yurt-iot
ENTRYPOINT ["yurt-iot"]
CMD ["--help"]
