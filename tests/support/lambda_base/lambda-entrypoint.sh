#!/bin/sh
# The contract of AWS's /lambda-entrypoint.sh: the handler is the one argument; under Lambda (or the SAM CLI's
# emulator, which sets AWS_LAMBDA_RUNTIME_API) run the runtime, otherwise the emulator bundled in the image.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
else
  exec /var/runtime/bootstrap
fi
