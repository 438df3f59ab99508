import sys

from fits.predict import main

sys.exit(main())
