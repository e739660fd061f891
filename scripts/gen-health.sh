#!/usr/bin/env bash
# Builds gen/health.binpb: the FileDescriptorSet of grpc.health.v1 for server
# reflection, from the health.proto that grpc-health-check ships, under its
# canonical name grpc/health/v1/health.proto (the package keeps it as
# health/v1/health.proto). Run by `npm run gen`.
set -euo pipefail
src=node_modules/grpc-health-check/proto/health/v1/health.proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/grpc/health/v1"
cp "$src" "$tmp/grpc/health/v1/health.proto"
npx buf build "$tmp" -o gen/health.binpb
