#!/usr/bin/env bash
# Installs `prometheus` and `promtool` (Debian/Ubuntu package `prometheus`) when either is
# missing: the alert-rule tests and the dashboard test run them. Idempotent and quiet; run by
# `make prometheus` (part of `make test`).
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: prometheus and promtool are missing and apt-get is not available:" \
    "install Prometheus 2.42 or later (https://prometheus.io/download/) on PATH" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing prometheus and promtool (apt package prometheus)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Only the binaries are wanted: the service the package may have started is stopped again.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  $sudo systemctl disable --now --quiet prometheus
fi
