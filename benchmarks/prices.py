"""AWS list prices the cost figures are computed from, written once.

us-east-1, x86, as published on the AWS pricing pages in 2025 (not re-checked from this offline machine; check
the pricing pages before relying on a figure). Lambda and HTTP API prices are for their first tiers.
"""

LAMBDA_USD_PER_GB_SECOND = 0.0000166667
LAMBDA_USD_PER_REQUEST = 0.20 / 1e6
HTTP_API_USD_PER_REQUEST = 1.00 / 1e6
# Provisioned concurrency: each environment kept initialised, whether used or not; and the (lower) duration price
# of the requests it serves.
LAMBDA_PROVISIONED_USD_PER_GB_SECOND = 0.0000041667
LAMBDA_PROVISIONED_DURATION_USD_PER_GB_SECOND = 0.0000097222
SECONDS_PER_MONTH = 30 * 24 * 3600
# S3 Batch Operations: per job, and per object the job processes.
BATCH_OPERATIONS_USD_PER_JOB = 0.25
BATCH_OPERATIONS_USD_PER_OBJECT = 1.00 / 1e6
# S3 Standard requests: GET-class (GET, HEAD, GetObjectTagging) and PUT-class (PUT, PutObjectTagging, LIST).
S3_USD_PER_GET_REQUEST = 0.0004 / 1000
S3_USD_PER_PUT_REQUEST = 0.005 / 1000
