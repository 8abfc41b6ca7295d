"""Old import path of `hwsearch.search.engine.metrics`, kept for one release.

Run folders written before the search package was split into sub-packages hold pickles (Tune's
searcher, trainable and callbacks) that name this path; it is the same module object as the new one.
"""

import sys

from hwsearch.search.engine import metrics as _module

sys.modules[__name__] = _module
