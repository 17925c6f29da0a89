import sys

from lab.report.write import main

sys.exit(main())
