#!/bin/bash
# Test stand-in for X-Road's xroad-base.sh, which the 7.4.1+ entrypoint runs as xroad to make
# the internal gRPC TLS key pair under /var/run/xroad. This one writes only the env file the
# real one leaves there, so a test can tell that the step ran.
set -eu
umask 077
env_file=/var/run/xroad/xroad-grpc-internal-env.properties
[[ -f $env_file ]] || echo "XROAD_GRPC_INTERNAL_KEYSTORE_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$env_file"
