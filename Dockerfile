# yurt-iot: one image for every subcommand (`docker run IMAGE <subcommand> ...`).
# Stage 1 builds wheels for the package (with the built-in drivers in drivers/, packaged by setup.py) and its
# dependencies; stage 2 installs them without a compiler and runs as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY yurt_iot ./yurt_iot
COPY drivers ./drivers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/yurt-iot yurt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels yurt-iot && rm -rf /wheels
# The example manifests, for `yurt-iot demo` (its built-in MQTT broker stands in for the missing mosquitto).
COPY examples/iot /usr/share/yurt-iot/examples/iot
ENV YURT_IOT_EXAMPLES=/usr/share/yurt-iot/examples/iot
USER 10001:10001
WORKDIR /var/lib/yurt-iot
EXPOSE 9464
ENTRYPOINT ["yurt-iot"]
CMD ["--help"]
