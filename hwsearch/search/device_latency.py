"""Old import path of `hwsearch.search.hardware.device`, kept for one release.

Run folders written before the search package was split into sub-packages hold pickles (Tune's
searcher, trainable and callbacks) that name this path; it is the same module object as the new one.
"""

import sys

from hwsearch.search.hardware import device as _module

sys.modules[__name__] = _module
