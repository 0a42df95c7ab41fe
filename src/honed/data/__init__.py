"""Model inputs: synthetic from the input specs, or real samples from an .npz, streamed in batches."""

from honed.data.dataset import Dataset, SyntheticDataset, batch_of, open_dataset
from honed.data.npz import NpzDataset
from honed.data.synthetic import synthetic_feeds

__all__ = ["Dataset", "NpzDataset", "SyntheticDataset", "batch_of", "open_dataset", "synthetic_feeds"]
