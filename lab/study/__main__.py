import sys

from lab.study.main import main

sys.exit(main())
