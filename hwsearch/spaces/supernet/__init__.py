"""Once-for-All supernets: elastic weights shared by every network of a space.

`SuperNet` runs and extracts any choice of a space from one set of weights; `train_supernet` trains
it by progressive shrinking; `load_or_train` caches trained supernets on disk; `measure` recalibrates
BatchNorm and measures or extracts sub-networks. `COMPACT` holds space settings sized for small
images such as digits (8x8), where the spaces' defaults (24-32 px) would cost ten times more.
"""

from hwsearch.spaces.supernet.cache import CachedSupernet, cache_dir, load_or_train, supernet_key
from hwsearch.spaces.supernet.measure import (
    accuracies,
    calibrated,
    extract_subnet,
    sample_choices,
    subnet_accuracy,
)
from hwsearch.spaces.supernet.supernet import SuperNet, gene_kind
from hwsearch.spaces.supernet.training import SCHEDULES, Schedule, TrainingLog, schedule, train_supernet

COMPACT: dict[str, dict] = {
    "ofa-mbv3": {"resolutions": [8, 12], "stem_width": 8, "first_width": 8, "widths": [8, 16, 24, 32, 48],
                 "head_width": 96},
    # The vit defaults (32x32 input upsampled from 8x8, 8x8 patches, 16 tokens) learn digits far faster
    # than 8x8 input with 2x2 patches (also 16 tokens, same block cost): BENCHMARKS.md, "Figures behind
    # design choices".
    "vit": {},
}

__all__ = ["COMPACT", "CachedSupernet", "SCHEDULES", "Schedule", "SuperNet", "TrainingLog", "accuracies",
           "cache_dir", "calibrated", "extract_subnet", "gene_kind", "load_or_train", "sample_choices", "schedule",
           "subnet_accuracy", "supernet_key", "train_supernet"]
