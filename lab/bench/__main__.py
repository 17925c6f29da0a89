import sys

from lab.bench.main import main

sys.exit(main())
