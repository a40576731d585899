import sys

from lambda_function.cli import main

sys.exit(main())
