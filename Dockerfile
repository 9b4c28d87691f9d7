# One image for every Signet component; the entry point is the `signet` command and the
# component is its argument (`signer serve`, `storage serve`, `operator run`, `ca init`).
# Not built in this repository's CI (no container engine there); tests/operator checks that
# every file and entry point named here exists.
FROM python:3.12.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hsm/ hsm/
COPY services/ services/
COPY operator/ operator/
COPY cli/ cli/
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12.7-slim-bookworm
COPY --from=build /install /usr/local
# The stamp and appearance font (Latin + CJK, 5 MB; signet.signer.pades.appearance);
# poppler's pdftoppm for the portal pages' page images (a browser without JavaScript)
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei poppler-utils \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/signet signet \
    && mkdir -p /var/lib/signet && chown 10001:10001 /var/lib/signet
# Runs non-root with a read-only root file system: everything written goes to
# /var/lib/signet and /tmp, which the pods mount as volumes.
USER 10001:10001
ENV SIGNET_HOME=/var/lib/signet PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8101 8102
ENTRYPOINT ["signet"]
CMD ["--help"]
